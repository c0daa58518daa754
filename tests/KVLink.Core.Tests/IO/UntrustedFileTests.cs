using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.IO;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tests.Model;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.IO;

/// <summary>
/// Issue #19, item 12: every file of a checkpoint folder is read only when it is a regular file (or a link to one)
/// and within its size cap. A FIFO or a link to /dev/zero in place of any of them is refused naming the file, at once.
/// </summary>
public sealed class UntrustedFileTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void FileKind_tells_regular_files_and_links_to_them_from_fifos_devices_and_directories()
    {
        if (!SpecialFiles.Supported) return;
        File.WriteAllText(_dir.File("plain"), "x");
        File.CreateSymbolicLink(_dir.File("link"), _dir.File("plain"));
        SpecialFiles.MakeFifo(_dir.File("fifo"));
        SpecialFiles.LinkToDevZero(_dir.File("zero"));
        Directory.CreateDirectory(_dir.File("dir"));
        File.CreateSymbolicLink(_dir.File("dangling"), _dir.File("nothing"));

        Assert.True(FileKind.IsRegularFile(_dir.File("plain")));
        Assert.True(FileKind.IsRegularFile(_dir.File("link")));
        Assert.False(FileKind.IsRegularFile(_dir.File("fifo")));
        Assert.False(FileKind.IsRegularFile(_dir.File("zero")));
        Assert.False(FileKind.IsRegularFile("/dev/null"));
        Assert.False(FileKind.IsRegularFile(_dir.File("dir")));
        Assert.Throws<FileNotFoundException>(() => FileKind.IsRegularFile(_dir.File("nothing")));
        Assert.Throws<FileNotFoundException>(() => FileKind.IsRegularFile(_dir.File("dangling")));
    }

    public static TheoryData<string, string> CheckpointFiles()
    {
        var data = new TheoryData<string, string>();
        foreach (string kind in new[] { "fifo", "devzero" })
            foreach (string file in new[] { "config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "original/tokenizer.model", "kvlink_prompt.json" })
                data.Add(file, kind);
        return data;
    }

    [Theory]
    [MemberData(nameof(CheckpointFiles))]
    public async Task A_fifo_or_link_to_dev_zero_in_place_of_any_checkpoint_file_is_refused_naming_it(string file, string kind)
    {
        if (!SpecialFiles.Supported) return;
        WriteCheckpoint();
        if (file == "model.safetensors.index.json") File.Delete(_dir.File("model.safetensors"));
        if (file == "original/tokenizer.model") { File.Delete(_dir.File("tokenizer.json")); Directory.CreateDirectory(_dir.File("original")); }
        string path = _dir.File(file);
        SpecialFiles.Make(path, kind);
        long before = GC.GetAllocatedBytesForCurrentThread();

        Func<object?> read = file switch
        {
            "config.json" or "model.safetensors" or "model.safetensors.index.json" => () => LlamaCheckpoint.Load(_dir.Path),
            "kvlink_prompt.json" => () => PromptSettingsFile.ReadSystemText(_dir.Path),
            _ => () => LlamaTokenizer.FromCheckpointFolder(_dir.Path),
        };
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => SpecialFiles.Bounded(read));
        Assert.Contains(Path.GetFileName(path), e.Message);
        Assert.Contains("not a regular file", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "nothing sizeable may be read before the refusal");
    }

    [Theory]
    [InlineData("config.json", "fifo")]
    [InlineData("model.safetensors", "fifo")]
    [InlineData("tokenizer.json", "devzero")]
    [InlineData("config.json", "devzero")]
    public async Task Engine_LoadAsync_fails_at_once_on_a_special_file(string file, string kind)
    {
        if (!SpecialFiles.Supported) return;
        WriteCheckpoint();
        SpecialFiles.Make(_dir.File(file), kind);
        var load = KvLinkEngine.LoadAsync(_dir.Path, new KvLinkOptions { DType = ComputeDType.Float32 });
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => load.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains(file, e.Message);
    }

    [Fact]
    public void A_checkpoint_whose_files_are_links_to_regular_files_loads()
    {
        // The Hugging Face cache lays snapshots out as links into a blobs folder.
        WriteCheckpoint();
        Directory.CreateDirectory(_dir.File("blobs"));
        foreach (string name in new[] { "config.json", "model.safetensors", "tokenizer.json" })
        {
            File.Move(_dir.File(name), _dir.File("blobs/" + name));
            File.CreateSymbolicLink(_dir.File(name), _dir.File("blobs/" + name));
        }
        using var model = LlamaCheckpoint.Load(_dir.Path, TorchSharp.torch.ScalarType.Float32);
        Assert.Equal(SyntheticCheckpoint.VocabSize, model.Config.VocabSize);
        Assert.Equal(SyntheticCheckpoint.VocabSize, LlamaTokenizer.FromCheckpointFolder(_dir.Path).VocabSize);
    }

    [Theory]
    [InlineData("config.json", UntrustedFile.SmallJsonMaxBytes)]
    [InlineData("kvlink_prompt.json", UntrustedFile.SmallJsonMaxBytes)]
    [InlineData("tokenizer.json", UntrustedFile.TokenizerMaxBytes)]
    [InlineData("original/tokenizer.model", UntrustedFile.TokenizerMaxBytes)]
    [InlineData("model.safetensors.index.json", KVLink.Core.Model.SafeTensors.SafeTensorsFile.MaxHeaderBytes)]
    public void A_file_over_its_cap_is_refused_before_it_is_read(string file, long cap)
    {
        WriteCheckpoint();
        if (file == "model.safetensors.index.json") File.Delete(_dir.File("model.safetensors"));
        if (file == "original/tokenizer.model") { File.Delete(_dir.File("tokenizer.json")); Directory.CreateDirectory(_dir.File("original")); }
        // Sparse: the size is there, the disk blocks are not.
        using (var f = File.Create(_dir.File(file))) f.SetLength(cap + 1);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() =>
        {
            if (file == "kvlink_prompt.json") PromptSettingsFile.ReadSystemText(_dir.Path);
            else if (file.StartsWith("config", StringComparison.Ordinal) || file.StartsWith("model", StringComparison.Ordinal)) LlamaCheckpoint.Load(_dir.Path).Dispose();
            else LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        });
        Assert.Contains(Path.GetFileName(file), e.Message);
        Assert.Contains("exceeds", e.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);

        // One byte less is not refused for its size (it is then judged as JSON/tiktoken: zeros are not valid).
        using (var f = File.OpenWrite(_dir.File(file))) f.SetLength(Math.Min(cap, 4096));
        Assert.DoesNotContain("exceeds", Assert.ThrowsAny<Exception>(() =>
        {
            if (file == "kvlink_prompt.json") PromptSettingsFile.ReadSystemText(_dir.Path);
            else if (file.StartsWith("config", StringComparison.Ordinal) || file.StartsWith("model", StringComparison.Ordinal)) LlamaCheckpoint.Load(_dir.Path).Dispose();
            else LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        }).Message);
    }

    [Fact]
    public void Prompt_settings_of_the_wrong_shape_are_InvalidDataException_naming_the_file()
    {
        foreach (string content in new[] { "[1]", "{\"system_text\": 5}", "{\"system_text\": ", "\"text\"" })
        {
            File.WriteAllText(_dir.File(PromptSettingsFile.FileName), content);
            Assert.Contains(PromptSettingsFile.FileName, Assert.Throws<InvalidDataException>(() => PromptSettingsFile.ReadSystemText(_dir.Path)).Message);
        }
        File.WriteAllText(_dir.File(PromptSettingsFile.FileName), "{\"system_text\": null}");
        Assert.Null(PromptSettingsFile.ReadSystemText(_dir.Path));
        PromptSettingsFile.Write(_dir.Path, "Be brief.");
        Assert.Equal("Be brief.", PromptSettingsFile.ReadSystemText(_dir.Path));
    }

    private void WriteCheckpoint()
    {
        SyntheticCheckpoint.Write(_dir.Path, SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 2, heads: 4, kvHeads: 2));
        PromptSettingsFile.Write(_dir.Path, "Answer briefly.");
        var tensors = new[] { "model.embed_tokens.weight" };
        File.WriteAllText(_dir.File("model.safetensors.index.json"),
            "{\"weight_map\": {" + string.Join(",", tensors.Select(t => $"\"{t}\": \"model.safetensors\"")) + "}}");
    }
}
