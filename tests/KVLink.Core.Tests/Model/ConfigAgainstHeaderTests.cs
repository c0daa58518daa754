using System.Diagnostics;
using System.Text.Json.Nodes;
using KVLink.Core.Model;
using KVLink.Core.Tests.Reliability;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// Issue #19, item 9: config.json is checked against the safetensors header (layer count, every expected tensor's
/// shape and dtype) before the model is built, so a hostile config allocates nothing: the failing loads below create
/// no tensor at all. Serial, because it reads the process-wide live-tensor count.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class ConfigAgainstHeaderTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public ConfigAgainstHeaderTests()
    {
        var c = TestModels.GqaLlama3; // 2 layers, hidden 64, head_dim 16, untied
        using var m = TestModels.Build(c, TestModels.RandomWeights(c, seed: 31));
        LlamaCheckpoint.Save(m, _dir.Path);
    }

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, string, string> Mismatches() => new()
    {
        // The three reports of the issue, then in-bounds values the header contradicts.
        { "{\"hidden_size\": 2147483647, \"head_dim\": 16}", "config.json", "hidden_size" },
        { "{\"num_hidden_layers\": 1000000000}", "config.json", "num_hidden_layers" },
        { "{\"head_dim\": 1073741824}", "config.json", "head_dim" },
        { "{\"num_hidden_layers\": 3}", "config.json", "has tensors for 2 layers" },
        { "{\"num_hidden_layers\": 1}", "config.json", "has tensors for 2 layers" },
        { "{\"hidden_size\": 65536}", "model.safetensors", "hidden_size" },
        { "{\"vocab_size\": 16777216}", "model.safetensors", "vocab_size" },
        { "{\"intermediate_size\": 262144}", "model.safetensors", "intermediate_size" },
        { "{\"head_dim\": 1024}", "model.safetensors", "head_dim" },
        { "{\"num_attention_heads\": 1024, \"num_key_value_heads\": 2}", "model.safetensors", "num_attention_heads" },
        { "{\"num_key_value_heads\": 4}", "model.safetensors", "num_key_value_heads" },
        { "{\"tie_word_embeddings\": true}", "model.safetensors", "lm_head" },
    };

    [Theory]
    [MemberData(nameof(Mismatches))]
    public void A_config_the_header_contradicts_fails_naming_the_file_and_field_before_any_tensor_exists(string edit, string file, string field)
    {
        var node = JsonNode.Parse(File.ReadAllText(_dir.File("config.json")))!.AsObject();
        foreach (var (k, v) in JsonNode.Parse(edit)!.AsObject()) node[k] = v?.DeepClone();
        File.WriteAllText(_dir.File("config.json"), node.ToJsonString());

        long tensors = LiveTensors.Quiesced(), managed = GC.GetAllocatedBytesForCurrentThread();
        Exception? e = Record.Exception(() => LlamaCheckpoint.Load(_dir.Path, ScalarType.Float32).Dispose());

        if (field == "lm_head")
        {
            // Tied weights with a stored lm_head is a valid checkpoint (the stored head is ignored).
            Assert.Null(e);
            return;
        }
        var bad = Assert.IsType<InvalidDataException>(e);
        Assert.Contains(file, bad.Message);
        Assert.Contains(field, bad.Message);
        LiveTensors.AssertNoneCreatedSince(tensors);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - managed < 4 << 20, "a refused config may not allocate megabytes");
    }

    [Fact]
    public void A_weight_of_the_wrong_dtype_is_refused_before_the_model_is_built()
    {
        var c = TestModels.GqaLlama3;
        using var m = TestModels.Build(c, TestModels.RandomWeights(c, seed: 31));
        var named = m.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        using var ints = zeros([64], ScalarType.Int32);
        named["model.norm.weight"] = ints;
        KVLink.Core.Model.SafeTensors.SafeTensorsWriter.Write(_dir.File("model.safetensors"), named);
        long tensors = LiveTensors.Quiesced();
        var e = Assert.Throws<InvalidDataException>(() => LlamaCheckpoint.Load(_dir.Path, ScalarType.Float32));
        Assert.Contains("dtype I32", e.Message);
        LiveTensors.AssertNoneCreatedSince(tensors);
    }

    [Fact]
    public void The_expected_tensors_are_exactly_the_models_parameters()
    {
        foreach (var c in new[] { TestModels.GqaLlama3, TestModels.WideHeadsTied })
        {
            using var meta = new LlamaForCausalLM(c, ScalarType.Float32, META);
            var actual = meta.named_parameters().Where(p => !(c.TieWordEmbeddings && p.name == "lm_head.weight"))
                .ToDictionary(p => p.name, p => p.parameter.shape);
            var expected = LlamaTensorShapes.Of(c).ToDictionary(e => e.Name, e => e.Shape);
            Assert.Equal(actual.Keys.Order(), expected.Keys.Order());
            Assert.All(actual, p => Assert.Equal(p.Value, expected[p.Key]));
        }
    }
}
