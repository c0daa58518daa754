using KVLink.Core.Model;
using KVLink.Core.Model.SafeTensors;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>Loading HF checkpoint folders: layouts, dtypes, tied heads, and every malformed case named clearly.</summary>
public class CheckpointLoadingTests
{
    private static readonly long[] Tokens = [3, 17, 250, 99, 4, 42, 7, 7, 128, 5];

    private static Tensor Logits(LlamaForCausalLM m)
    {
        using var _ = no_grad();
        using var ids = tensor(Tokens, [1, Tokens.Length]);
        return m.Forward(ids);
    }

    private static void AssertSame(Tensor a, Tensor b) => Assert.True(a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>(), $"max diff {(a - b).abs().max().item<float>()}");

    [Fact]
    public void Single_file_and_sharded_checkpoints_give_identical_logits()
    {
        var c = TestModels.GqaLlama3;
        using var original = TestModels.Build(c, TestModels.RandomWeights(c, seed: 21));
        using var single = new TempFolder();
        using var sharded = new TempFolder();
        LlamaCheckpoint.Save(original, single.Path);
        var tensors = original.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter)).ToList();
        CheckpointWriter.WriteSharded(sharded.Path, tensors, shardCount: 3);
        File.Copy(single.File("config.json"), sharded.File("config.json"));
        Assert.True(File.Exists(sharded.File("model.safetensors.index.json")));
        Assert.False(File.Exists(sharded.File("model.safetensors")));

        using var a = LlamaCheckpoint.Load(single.Path, ScalarType.Float32);
        using var b = LlamaCheckpoint.Load(sharded.Path, ScalarType.Float32);
        using var expected = Logits(original);
        using var la = Logits(a);
        using var lb = Logits(b);
        AssertSame(expected, la);
        AssertSame(la, lb);
    }

    [Fact]
    public void Tied_checkpoints_load_without_lm_head_and_untied_ones_use_their_own()
    {
        var tied = TestModels.WideHeadsTied;
        using var original = TestModels.Build(tied, TestModels.RandomWeights(tied, seed: 22));
        using var dir = new TempFolder();
        LlamaCheckpoint.Save(original, dir.Path);
        using (var file = SafeTensorsFile.Open(dir.File("model.safetensors")))
            Assert.DoesNotContain("lm_head.weight", file.Tensors.Keys);
        using var loaded = LlamaCheckpoint.Load(dir.Path, ScalarType.Float32);
        using var l0 = Logits(original);
        using var l1 = Logits(loaded);
        AssertSame(l0, l1);

        var untied = TestModels.GqaLlama3;
        using var u = TestModels.Build(untied, TestModels.RandomWeights(untied, seed: 23));
        using var udir = new TempFolder();
        LlamaCheckpoint.Save(u, udir.Path);
        using (var file = SafeTensorsFile.Open(udir.File("model.safetensors")))
            Assert.Contains("lm_head.weight", file.Tensors.Keys);
        using var ul = LlamaCheckpoint.Load(udir.Path, ScalarType.Float32);
        using var ul0 = Logits(u);
        using var ul1 = Logits(ul);
        AssertSame(ul0, ul1);
    }

    [Fact]
    public void Bf16_and_f16_weights_are_converted_to_the_compute_dtype()
    {
        var c = TestModels.GqaLlama3;
        var weights = TestModels.RandomWeights(c, seed: 24);
        foreach (var stored in new[] { ScalarType.BFloat16, ScalarType.Float16 })
        {
            using var onDisk = TestModels.Build(c, weights, stored);
            using var dir = new TempFolder();
            LlamaCheckpoint.Save(onDisk, dir.Path);
            using var f32 = LlamaCheckpoint.Load(dir.Path, ScalarType.Float32);
            Assert.All(f32.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
            foreach (var (name, p) in f32.named_parameters())
            {
                var original = onDisk.named_parameters().First(q => q.name == name).parameter;
                Assert.True(p.eq(original.to(ScalarType.Float32)).all().item<bool>(), name);
            }
            using var bf = LlamaCheckpoint.Load(dir.Path, ScalarType.BFloat16);
            Assert.All(bf.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        }
    }

    private static TempFolder Checkpoint(Func<string, string>? editConfig = null, Action<Dictionary<string, Tensor>>? editTensors = null)
    {
        var c = TestModels.GqaLlama3;
        var dir = new TempFolder();
        using var m = TestModels.Build(c, TestModels.RandomWeights(c, seed: 25));
        var tensors = m.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        editTensors?.Invoke(tensors);
        SafeTensorsWriter.Write(dir.File("model.safetensors"), tensors);
        File.WriteAllText(dir.File("config.json"), (editConfig ?? (s => s))(c.ToJson()));
        return dir;
    }

    [Fact]
    public void Unsupported_configs_fail_at_load_naming_what_and_where()
    {
        using (var d = Checkpoint(s => s.Replace("\"model_type\": \"llama\"", "\"model_type\": \"mistral\"")))
            Assert.Contains("model_type is 'mistral'", Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path)).Message);
        using (var d = Checkpoint(s => s.Replace("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"")))
        {
            var e = Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path));
            Assert.Contains("rope_type 'yarn'", e.Message);
            Assert.Contains("config.json", e.Message);
        }
        using (var d = Checkpoint(s => s.Replace("\"hidden_size\": 64", "\"hidden_size\": \"64\"")))
            Assert.Contains("hidden_size", Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path)).Message);
        using (var d = Checkpoint(s => s[..^5]))
            Assert.Contains("invalid JSON", Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path)).Message);
    }

    [Fact]
    public void Missing_or_mismatched_tensors_are_named()
    {
        using (var d = Checkpoint(editTensors: t => t.Remove("model.layers.1.mlp.up_proj.weight")))
            Assert.Contains("'model.layers.1.mlp.up_proj.weight'", Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path)).Message);
        using (var d = Checkpoint(editTensors: t => t.Remove("lm_head.weight")))
            Assert.Contains("tie_word_embeddings", Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path)).Message);
        using (var d = Checkpoint(s => s.Replace("\"intermediate_size\": 96", "\"intermediate_size\": 80")))
        {
            var e = Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path));
            Assert.Contains("gate_proj.weight", e.Message);
            Assert.Contains("[96, 64]", e.Message);
        }
        using (var d = Checkpoint(editTensors: t => t["model.norm.weight"] = zeros([64], ScalarType.Int32)))
            Assert.Contains("dtype I32", Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(d.Path)).Message);
    }

    [Fact]
    public void Missing_folder_config_or_weights_give_clear_errors()
    {
        Assert.Throws<DirectoryNotFoundException>(() => LlamaCheckpoint.Load("/nonexistent/kvlink-model"));
        using var empty = new TempFolder();
        Assert.Contains("config.json", Assert.Throws<FileNotFoundException>(() => LlamaCheckpoint.Load(empty.Path)).Message);
        File.WriteAllText(empty.File("config.json"), TestModels.GqaLlama3.ToJson());
        Assert.Throws<FileNotFoundException>(() => LlamaCheckpoint.Load(empty.Path));
        File.WriteAllBytes(empty.File("model.safetensors"), [1, 2, 3]);
        Assert.Contains("model.safetensors", Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(empty.Path)).Message);
    }
}
