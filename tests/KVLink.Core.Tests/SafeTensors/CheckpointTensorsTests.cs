using System.Text.Json;
using KVLink.Core.Model.SafeTensors;
using Xunit;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.SafeTensors;

public sealed class CheckpointTensorsTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private static List<KeyValuePair<string, Tensor>> SampleTensors() =>
    [
        new("model.embed_tokens.weight", arange(24, ScalarType.Float32).reshape(6, 4)),
        new("model.layers.0.self_attn.q_proj.weight", arange(16, ScalarType.Float32).to(ScalarType.BFloat16).reshape(4, 4)),
        new("model.layers.0.input_layernorm.weight", ones(4, ScalarType.Float16)),
        new("model.layers.1.self_attn.k_proj.weight", arange(8, ScalarType.Float32).mul(-0.5).reshape(2, 4)),
        new("model.norm.weight", full(4, 2.0, ScalarType.Float32)),
        new("lm_head.weight", arange(24, ScalarType.Float32).flip(0).reshape(6, 4)),
        new("rope.inv_freq", tensor(new long[] { 1, 2, 3 })),
    ];

    private static void DisposeAll(List<KeyValuePair<string, Tensor>> tensors) { foreach (var (_, t) in tensors) t.Dispose(); }

    [Fact]
    public void ShardedRoundTripEqualsSingleFile()
    {
        var tensors = SampleTensors();
        string single = Path.Combine(_dir.Path, "single"), sharded = Path.Combine(_dir.Path, "sharded");
        CheckpointWriter.WriteSingle(single, tensors);
        CheckpointWriter.WriteSharded(sharded, tensors, shardCount: 3, new Dictionary<string, string> { ["format"] = "pt" });

        Assert.Equal(
            ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json"],
            Directory.GetFiles(sharded).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        using var a = CheckpointTensors.Open(single);
        using var b = CheckpointTensors.Open(sharded);
        Assert.Equal(tensors.Select(p => p.Key).Order(StringComparer.Ordinal), a.Names);
        Assert.Equal(a.Names, b.Names);
        foreach (var (name, original) in tensors)
        {
            Assert.Equal(a.Info(name).DType, b.Info(name).DType);
            Assert.Equal(a.Info(name).Shape, b.Info(name).Shape);
            using var x = a.Read(name);
            using var y = b.Read(name);
            Assert.Equal(original.bytes.ToArray(), x.bytes.ToArray());
            Assert.Equal(x.bytes.ToArray(), y.bytes.ToArray());
        }

        // Every shard really holds a part: the split is not all-in-one.
        foreach (string shard in Directory.GetFiles(sharded, "*.safetensors"))
        {
            using var f = SafeTensorsFile.Open(shard);
            Assert.InRange(f.Tensors.Count, 2, 3);
            Assert.Equal("pt", f.Metadata["format"]);
        }
        using var index = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(sharded, "model.safetensors.index.json")));
        Assert.Equal(tensors.Sum(p => p.Value.numel() * p.Value.ElementSize), index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        DisposeAll(tensors);
    }

    private string WriteIndex(string folderName, string indexJson)
    {
        string folder = Path.Combine(_dir.Path, folderName);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), indexJson);
        return folder;
    }

    private static string Map(string tensor, string shard) =>
        "{\"metadata\":{},\"weight_map\":{" + JsonSerializer.Serialize(tensor) + ":" + JsonSerializer.Serialize(shard) + "}}";

    public static TheoryData<string> MaliciousShardNames => new()
    {
        "../outside.safetensors", "sub/inside.safetensors", "..\\outside.safetensors", "..", ".", "", "C:outside.safetensors", "a\0b",
    };

    [Theory]
    [MemberData(nameof(MaliciousShardNames))]
    public void MaliciousShardNamesAreRejected(string shard)
    {
        // A valid shard really exists outside the checkpoint folder and in a subfolder, so a lax check would load it.
        using (var t = ones(1))
        {
            SafeTensorsWriter.Write(_dir.File("outside.safetensors"), [new("w", t)]);
            Directory.CreateDirectory(Path.Combine(_dir.Path, "ckpt", "sub"));
            SafeTensorsWriter.Write(Path.Combine(_dir.Path, "ckpt", "sub", "inside.safetensors"), [new("w", t)]);
        }
        string folder = WriteIndex("ckpt", Map("w", shard));
        var e = Assert.Throws<InvalidDataException>(() => CheckpointTensors.Open(folder));
        Assert.Contains("model.safetensors.index.json", e.Message);
        Assert.Contains("'w'", e.Message);
    }

    [Fact]
    public void AbsoluteShardPathIsRejected()
    {
        string outside = _dir.File("abs.safetensors");
        using (var t = ones(1)) SafeTensorsWriter.Write(outside, [new("w", t)]);
        string folder = WriteIndex("ckpt-abs", Map("w", outside));
        var e = Assert.Throws<InvalidDataException>(() => CheckpointTensors.Open(folder));
        Assert.Contains("not a plain file name", e.Message);
    }

    [Fact]
    public void MissingShardIsFileNotFoundNamingIt()
    {
        string folder = WriteIndex("ckpt-missing", Map("w", "model-00001-of-00002.safetensors"));
        var e = Assert.Throws<FileNotFoundException>(() => CheckpointTensors.Open(folder));
        Assert.Contains("model-00001-of-00002.safetensors", e.Message);
        Assert.Contains("model.safetensors.index.json", e.Message);
    }

    [Fact]
    public void TensorListedButAbsentFromItsShard()
    {
        string folder = WriteIndex("ckpt-absent", Map("ghost.weight", "shard.safetensors"));
        using (var t = ones(1)) SafeTensorsWriter.Write(Path.Combine(folder, "shard.safetensors"), [new("real.weight", t)]);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointTensors.Open(folder));
        Assert.Contains("'ghost.weight'", e.Message);
        Assert.Contains("shard.safetensors", e.Message);
        Assert.Contains("model.safetensors.index.json", e.Message);
    }

    [Theory]
    [InlineData("{\"weight_map\":", "invalid JSON")]
    [InlineData("[]", "root is not a JSON object")]
    [InlineData("{\"metadata\":{}}", "weight_map is missing")]
    [InlineData("{\"weight_map\":[]}", "weight_map is missing or not a JSON object")]
    [InlineData("{\"weight_map\":{\"w\":3}}", "shard name is not a string")]
    [InlineData("{\"weight_map\":{\"w\":\"a.safetensors\",\"w\":\"b.safetensors\"}}", "appears twice")]
    public void MalformedIndexIsInvalidDataNamingTheFile(string json, string fragment)
    {
        string folder = WriteIndex("ckpt-bad", json);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointTensors.Open(folder));
        Assert.Contains(Path.Combine(folder, "model.safetensors.index.json"), e.Message);
        Assert.Contains(fragment, e.Message);
    }

    [Fact]
    public void FolderWithoutCheckpointIsFileNotFoundNamingIt()
    {
        string folder = Path.Combine(_dir.Path, "empty-folder");
        Directory.CreateDirectory(folder);
        var e = Assert.Throws<FileNotFoundException>(() => CheckpointTensors.Open(folder));
        Assert.Contains(folder, e.Message);
        Assert.Throws<DirectoryNotFoundException>(() => CheckpointTensors.Open(Path.Combine(_dir.Path, "nope")));
    }

    [Fact]
    public void CorruptShardIsInvalidDataNamingTheShard()
    {
        var tensors = SampleTensors();
        string folder = Path.Combine(_dir.Path, "corrupt");
        CheckpointWriter.WriteSharded(folder, tensors, 2);
        DisposeAll(tensors);
        File.WriteAllBytes(Path.Combine(folder, "model-00002-of-00002.safetensors"), [1, 2, 3]);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointTensors.Open(folder));
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
    }

    [Fact]
    public void UnknownTensorIsKeyNotFoundNamingItAndTheFolder()
    {
        string folder = Path.Combine(_dir.Path, "unknown");
        using (var t = ones(1)) CheckpointWriter.WriteSingle(folder, [new("w", t)]);
        using var ckpt = CheckpointTensors.Open(folder);
        var e = Assert.Throws<KeyNotFoundException>(() => ckpt.Read("missing"));
        Assert.Contains("'missing'", e.Message);
        Assert.Contains(folder, e.Message);
        Assert.Throws<KeyNotFoundException>(() => ckpt.Info("missing"));
    }

    [Fact]
    public void ShardWriterRejectsBadCounts()
    {
        var tensors = SampleTensors();
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointWriter.WriteSharded(_dir.File("x"), tensors, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => CheckpointWriter.WriteSharded(_dir.File("y"), tensors, tensors.Count + 1));
        DisposeAll(tensors);
    }
}
