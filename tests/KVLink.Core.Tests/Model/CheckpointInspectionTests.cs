using System.Buffers.Binary;
using KVLink.Core.Engine;
using KVLink.Core.Native;
using KVLink.Demo;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// <see cref="KvLinkCheckpointReport.Inspect"/> on the real demo checkpoints and on copies broken one file at a time: each
/// problem is reported with the file it is in, and nothing throws.
/// </summary>
public sealed class CheckpointInspectionTests
{
    private static string Demo(string name = DemoModel.FolderName) =>
        DemoModel.FindFolder(name) ?? throw new DirectoryNotFoundException($"models/{name} not found above the test folder.");

    [Theory]
    [InlineData(DemoModel.FolderName, "slot-free")]
    [InlineData(DemoModel.FullAttentionFolderName, "numbered")]
    public void A_demo_checkpoint_is_loadable_with_its_shape_memory_and_prompt(string name, string header)
    {
        var report = KvLinkCheckpointReport.Inspect(Demo(name));

        Assert.True(report.CanLoad, string.Join("\n", report.Problems));
        Assert.Contains(report.Found, l => l.StartsWith("config.json: Llama, 4 layers, hidden 128, 4 heads (2 KV heads, head_dim 32)", StringComparison.Ordinal));
        Assert.Contains(report.Found, l => l.StartsWith("model.safetensors:", StringComparison.Ordinal) && l.Contains("F32", StringComparison.Ordinal));
        Assert.Contains(report.Found, l => l.StartsWith("tokenizer.json: ", StringComparison.Ordinal));
        Assert.Contains(report.Found, l => l.StartsWith("kvlink_prompt.json: " + header, StringComparison.Ordinal));
        Assert.Contains(report.Found, l => l.StartsWith("prompt format: link-token ids ", StringComparison.Ordinal));

        // The stored float32 bytes are the parameters x 4; at bf16 the engine holds half of that.
        long dataBytes = new FileInfo(Path.Combine(Demo(name), "model.safetensors")).Length;
        Assert.InRange(report.Parameters!.Value * 4, dataBytes - 64 * 1024, dataBytes);
        Assert.Equal(ComputeDType.BFloat16, report.DType);
        Assert.Equal(report.Parameters * 2, report.WeightBytes);
        Assert.Equal(2L * 4 * 2 * 32 * 2 * 1024, report.CacheBytesPer1kTokens);   // K and V x layers x KV heads x head_dim x bf16 x 1k
        Assert.Equal(report.Parameters * 4, KvLinkCheckpointReport.Inspect(Demo(name), ComputeDType.Float32).WeightBytes);
        Assert.Equal(CpuCapabilities.Current.Tier.Name(), report.CpuTier);
    }

    [Fact]
    public void A_missing_folder_is_one_problem_naming_it()
    {
        string missing = Path.Combine(Path.GetTempPath(), "kvlink-no-such-model-" + Guid.NewGuid().ToString("N"));
        var report = KvLinkCheckpointReport.Inspect(missing);
        Assert.False(report.CanLoad);
        Assert.Equal($"The folder '{missing}' does not exist.", Assert.Single(report.Problems));
        Assert.Empty(report.Found);
        Assert.Null(report.WeightBytes);
    }

    [Fact]
    public void A_folder_without_tokenizer_reports_the_tokenizer_and_keeps_the_rest()
    {
        using var folder = CopyOfDemo();
        File.Delete(folder.File("tokenizer.json"));
        var report = KvLinkCheckpointReport.Inspect(folder.Path);
        var problem = Assert.Single(report.Problems);
        Assert.StartsWith("Tokenizer: No tokenizer in checkpoint folder", problem);
        Assert.Contains("tokenizer.json", problem);
        Assert.NotNull(report.WeightBytes);   // the weights' headers were still read
        Assert.Contains(report.Found, l => l.StartsWith("config.json:", StringComparison.Ordinal));
    }

    [Fact]
    public void A_bad_config_is_reported_with_its_field()
    {
        using var folder = CopyOfDemo();
        string config = File.ReadAllText(folder.File("config.json")).Replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", StringComparison.Ordinal);
        File.WriteAllText(folder.File("config.json"), config);
        var report = KvLinkCheckpointReport.Inspect(folder.Path);
        Assert.False(report.CanLoad);
        Assert.Contains(report.Problems, p => p.StartsWith("config.json: ", StringComparison.Ordinal) && p.Contains("num_key_value_heads", StringComparison.Ordinal));
        Assert.Null(report.CacheBytesPer1kTokens);
    }

    [Fact]
    public void A_config_that_disagrees_with_the_weights_is_reported()
    {
        using var folder = CopyOfDemo();
        string config = File.ReadAllText(folder.File("config.json")).Replace("\"intermediate_size\": 384", "\"intermediate_size\": 512", StringComparison.Ordinal);
        File.WriteAllText(folder.File("config.json"), config);
        var report = KvLinkCheckpointReport.Inspect(folder.Path);
        Assert.Contains(report.Problems, p => p.Contains("intermediate_size", StringComparison.Ordinal) && p.Contains("shape", StringComparison.Ordinal));
    }

    [Fact]
    public void A_truncated_safetensors_file_is_reported_with_the_file()
    {
        using var folder = CopyOfDemo();
        string weights = folder.File("model.safetensors");
        using (var f = new FileStream(weights, FileMode.Open, FileAccess.ReadWrite)) f.SetLength(f.Length / 2);
        var report = KvLinkCheckpointReport.Inspect(folder.Path);
        Assert.False(report.CanLoad);
        var problem = Assert.Single(report.Problems);
        Assert.StartsWith("Weights: ", problem);
        Assert.Contains("model.safetensors", problem);
        Assert.Null(report.Parameters);
    }

    [Fact]
    public void A_header_length_past_the_end_of_the_file_is_reported()
    {
        using var folder = CopyOfDemo();
        string weights = folder.File("model.safetensors");
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 1UL << 40);
        using (var f = new FileStream(weights, FileMode.Open, FileAccess.ReadWrite)) f.Write(bytes);
        var problem = Assert.Single(KvLinkCheckpointReport.Inspect(folder.Path).Problems);
        Assert.Contains("header length", problem);
    }

    [Fact]
    public void A_bad_prompt_settings_file_is_reported()
    {
        using var folder = CopyOfDemo();
        File.WriteAllText(folder.File("kvlink_prompt.json"), """{"document_header":"sideways"}""");
        var problem = Assert.Single(KvLinkCheckpointReport.Inspect(folder.Path).Problems);
        Assert.StartsWith("Prompt format: ", problem);
        Assert.Contains("document_header", problem);
    }

    private static TempFolder CopyOfDemo()
    {
        var folder = new TempFolder();
        foreach (string file in Directory.EnumerateFiles(Demo()))
            File.Copy(file, folder.File(Path.GetFileName(file)));
        return folder;
    }
}
