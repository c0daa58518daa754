using System.Text.Json.Nodes;
using KVLink.Core.Model;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// Issue #19, items 9 and 10: every config.json number is of the right JSON kind, finite and inside
/// <see cref="LlamaConfigLimits"/>, or the load fails with an <see cref="InvalidDataException"/> naming config.json and
/// the field. A present but unusable value is never replaced by the default.
/// </summary>
public sealed class ConfigBoundsTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string[] IntFields =
    [
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
        "vocab_size", "max_position_embeddings", "bos_token_id", "eos_token_id", "rope_scaling.original_max_position_embeddings",
    ];

    private static readonly string[] DoubleFields =
        ["rms_norm_eps", "rope_theta", "rope_scaling.factor", "rope_scaling.low_freq_factor", "rope_scaling.high_freq_factor"];

    /// <summary>Huge, negative, non-finite, fractional, of another JSON kind: none is a usable integer field.</summary>
    private static readonly string[] BadInts =
    [
        "2147483647", "2147483648", "9223372036854775808", "1000000000", "1e9", "-1", "-2147483648", "1.5", "64.0",
        "1e999", "-1e999", "\"64\"", "\"NaN\"", "true", "[]", "{}",
    ];

    private static readonly string[] BadDoubles =
        ["1e999", "-1e999", "1e308", "-1", "\"NaN\"", "\"Infinity\"", "\"10000\"", "true", "[]", "{}"];

    public static TheoryData<string, string> Hostile()
    {
        var data = new TheoryData<string, string>();
        foreach (string f in IntFields)
            // 0 is a valid token id, and [] a valid (empty) list of end-of-sequence ids.
            foreach (string v in BadInts.Append("0").Where(v => !(v == "0" && f is "bos_token_id" or "eos_token_id") && !(v == "[]" && f == "eos_token_id")))
                data.Add(f, v);
        foreach (string f in DoubleFields)
            foreach (string v in BadDoubles.Concat(f is "rms_norm_eps" or "rope_theta" or "rope_scaling.factor" ? ["0", "1e-300"] : ["0"]))
                data.Add(f, v);
        foreach (var (f, v) in new[] { ("eos_token_id", "[1, \"2\"]"), ("eos_token_id", "[1.5]"), ("eos_token_id", "[-1]"), ("eos_token_id", "[300]"),
                     ("bos_token_id", "300"), ("rope_theta", "1"), ("tie_word_embeddings", "\"true\""), ("tie_word_embeddings", "1"),
                     ("torch_dtype", "5"), ("model_type", "5"), ("rope_scaling.rope_type", "3"), ("attention_bias", "\"no\"") })
            data.Add(f, v);
        return data;
    }

    [Theory]
    [MemberData(nameof(Hostile))]
    public void A_hostile_value_is_InvalidDataException_naming_config_json_and_the_field(string field, string rawValue)
    {
        string path = WriteConfig(field, rawValue);
        var e = Assert.Throws<InvalidDataException>(() => LlamaConfig.Load(path));
        Assert.Contains("config.json", e.Message);
        Assert.Contains(field.Split('.')[^1], e.Message);
    }

    [Theory]
    [InlineData("rope_theta", "\"NaN\"")]
    [InlineData("rms_norm_eps", "\"1e-5\"")]
    [InlineData("max_position_embeddings", "\"4096\"")]
    [InlineData("rope_scaling.low_freq_factor", "\"1\"")]
    public void A_present_value_of_the_wrong_kind_is_never_silently_defaulted(string field, string rawValue)
    {
        var e = Assert.Throws<InvalidDataException>(() => LlamaConfig.Load(WriteConfig(field, rawValue)));
        Assert.Contains("must be a", e.Message);
    }

    [Fact]
    public void Null_means_not_set_and_takes_the_documented_default()
    {
        var c = LlamaConfig.Load(WriteConfig("rope_theta", "null"));
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Null(LlamaConfig.Load(WriteConfig("bos_token_id", "null")).BosTokenId);
        Assert.Equal(16, LlamaConfig.Load(WriteConfig("head_dim", "null")).HeadDim); // 64 / 4 heads
    }

    [Fact]
    public void Every_value_at_the_bounds_loads_and_gives_finite_positive_rope_frequencies()
    {
        // The extreme corners allowed: widest heads, largest and smallest RoPE base, extreme scaling.
        foreach (var (theta, headDim, factor, low, high) in new[] { (1e12, 1024, 1024.0, 1e-9, 1024.0), (1.0000001, 2, 1.0, 1.0, 1.0001), (5e5, 128, 32.0, 1.0, 4.0) })
        {
            var node = BaseConfig();
            node["num_attention_heads"] = 256;
            node["num_key_value_heads"] = 256;
            node["head_dim"] = headDim;
            node["rope_theta"] = theta;
            node["rope_scaling"] = new JsonObject { ["rope_type"] = "llama3", ["factor"] = factor, ["low_freq_factor"] = low, ["high_freq_factor"] = high, ["original_max_position_embeddings"] = LlamaConfigLimits.MaxPositions };
            string path = _dir.File("config.json");
            File.WriteAllText(path, node.ToJsonString());
            var c = LlamaConfig.Load(path);
            var inv = RotaryEmbedding.InverseFrequencies(c.HeadDim, c.RopeTheta, c.RopeScaling);
            Assert.All(inv, f => Assert.True(float.IsFinite(f) && f > 0, $"theta {theta}, head_dim {headDim}: inverse frequency {f}"));
        }
    }

    [Fact]
    public void Products_of_fields_are_bounded_with_checked_arithmetic()
    {
        var node = BaseConfig();
        node["num_attention_heads"] = LlamaConfigLimits.MaxHeads;
        node["num_key_value_heads"] = LlamaConfigLimits.MaxHeads;
        node["head_dim"] = LlamaConfigLimits.MaxHeadDim;
        File.WriteAllText(_dir.File("config.json"), node.ToJsonString());
        var e = Assert.Throws<InvalidDataException>(() => LlamaConfig.Load(_dir.File("config.json")));
        Assert.Contains("num_attention_heads x head_dim", e.Message);

        // head_dim derived from hidden_size / heads is bounded too.
        node = BaseConfig();
        node.Remove("head_dim");
        node["hidden_size"] = LlamaConfigLimits.MaxHiddenSize;
        node["num_attention_heads"] = 2;
        node["num_key_value_heads"] = 2;
        File.WriteAllText(_dir.File("config.json"), node.ToJsonString());
        Assert.Contains("head_dim", Assert.Throws<InvalidDataException>(() => LlamaConfig.Load(_dir.File("config.json"))).Message);
    }

    private static JsonObject BaseConfig() => JsonNode.Parse(TestModels.GqaLlama3.ToJson())!.AsObject();

    /// <summary>config.json of <see cref="TestModels.GqaLlama3"/> with one field (dotted for rope_scaling) set to raw JSON.</summary>
    private string WriteConfig(string field, string rawValue)
    {
        var node = BaseConfig();
        var target = field.StartsWith("rope_scaling.", StringComparison.Ordinal) ? node["rope_scaling"]!.AsObject() : node;
        target[field.Split('.')[^1]] = "__HOSTILE__";
        string path = _dir.File("config.json");
        File.WriteAllText(path, node.ToJsonString().Replace("\"__HOSTILE__\"", rawValue, StringComparison.Ordinal));
        return path;
    }
}
