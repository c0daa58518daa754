using System.Text.Json;

namespace KVLink.Core.Model;

/// <summary>RoPE frequency scaling of Llama 3.1/3.2 (<c>rope_type: llama3</c>).</summary>
/// <param name="Factor">Divisor applied to low frequencies (32 for Llama 3.2, 8 for 3.1).</param>
/// <param name="LowFreqFactor">Wavelengths above <c>original/low</c> are fully scaled.</param>
/// <param name="HighFreqFactor">Wavelengths below <c>original/high</c> are kept.</param>
/// <param name="OriginalMaxPositionEmbeddings">Context length the model was pre-trained with (8192).</param>
public sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>The parts of a Hugging Face <c>config.json</c> (model_type <c>llama</c>) that define the transformer.</summary>
public sealed record LlamaConfig
{
    /// <summary>Width of the residual stream.</summary>
    public required int HiddenSize { get; init; }
    /// <summary>Width of the SwiGLU hidden layer.</summary>
    public required int IntermediateSize { get; init; }
    /// <summary>Number of decoder layers.</summary>
    public required int NumHiddenLayers { get; init; }
    /// <summary>Number of query heads.</summary>
    public required int NumAttentionHeads { get; init; }
    /// <summary>Number of key/value heads (grouped-query attention); equals the query heads without GQA.</summary>
    public required int NumKeyValueHeads { get; init; }
    /// <summary>Per-head width; <c>head_dim</c> when present, else hidden size / heads.</summary>
    public required int HeadDim { get; init; }
    /// <summary>Vocabulary size (rows of the embedding).</summary>
    public required int VocabSize { get; init; }
    /// <summary>Epsilon of RMSNorm.</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>RoPE base.</summary>
    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>llama3 RoPE scaling, or null for the default RoPE.</summary>
    public Llama3RopeScaling? RopeScaling { get; init; }
    /// <summary>Longest sequence the model supports.</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;
    /// <summary>True when <c>lm_head</c> shares the embedding matrix.</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Beginning-of-text token id, if any.</summary>
    public int? BosTokenId { get; init; }
    /// <summary>End-of-sequence token ids (a single id or a list in config.json).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary>The dtype the checkpoint says it was saved in (informational).</summary>
    public string? TorchDtype { get; init; }

    /// <summary>Query heads that share one key/value head.</summary>
    public int GroupSize => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Reads and validates a <c>config.json</c>.</summary>
    /// <exception cref="InvalidDataException">The file is not a supported Llama config; the message names the field.</exception>
    public static LlamaConfig Load(string path)
    {
        byte[] bytes = IO.UntrustedFile.ReadAllBytes(path, IO.UntrustedFile.SmallJsonMaxBytes);
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            return FromJson(doc.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
        }
    }

    /// <summary>Builds a config from an already-parsed <c>config.json</c> element.</summary>
    public static LlamaConfig FromJson(JsonElement root, string source = "config.json")
    {
        // A number of the wrong kind (1.5, 1e12 or "7" where an int belongs) is a bad file, not a crash.
        try { return FromJsonCore(root, source); }
        catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException)
        {
            throw new InvalidDataException($"{source}: a field has a value of the wrong type or range ({e.Message}).", e);
        }
    }

    private static LlamaConfig FromJsonCore(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw Bad(source, "the root is not a JSON object");
        string? modelType = Str(root, "model_type");
        if (modelType != "llama")
            throw Bad(source, $"model_type is '{modelType ?? "(missing)"}', only 'llama' is supported");
        if (Bool(root, "attention_bias") == true || Bool(root, "mlp_bias") == true)
            throw Bad(source, "attention_bias/mlp_bias are not supported (Llama has none)");

        int hidden = RequiredInt(root, "hidden_size", source);
        int heads = RequiredInt(root, "num_attention_heads", source);
        int kvHeads = Int(root, "num_key_value_heads") ?? heads;
        int headDim = Int(root, "head_dim") ?? (hidden % heads == 0 ? hidden / heads : throw Bad(source, "hidden_size is not divisible by num_attention_heads and head_dim is missing"));
        if (kvHeads <= 0 || heads % kvHeads != 0) throw Bad(source, $"num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kvHeads})");
        if (headDim % 2 != 0) throw Bad(source, $"head_dim ({headDim}) must be even for RoPE");

        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = RequiredInt(root, "intermediate_size", source),
            NumHiddenLayers = RequiredInt(root, "num_hidden_layers", source),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = RequiredInt(root, "vocab_size", source),
            RmsNormEps = Double(root, "rms_norm_eps") ?? 1e-6,
            RopeTheta = Double(root, "rope_theta") ?? 10000.0,
            RopeScaling = ParseRopeScaling(root, source),
            MaxPositionEmbeddings = Int(root, "max_position_embeddings") ?? 2048,
            TieWordEmbeddings = Bool(root, "tie_word_embeddings") ?? false,
            BosTokenId = Int(root, "bos_token_id"),
            EosTokenIds = ParseIds(root, "eos_token_id"),
            TorchDtype = Str(root, "torch_dtype"),
        };
        if (config.RmsNormEps <= 0) throw Bad(source, "rms_norm_eps must be positive");
        if (config.RopeTheta <= 0) throw Bad(source, "rope_theta must be positive");
        if (config.MaxPositionEmbeddings <= 0) throw Bad(source, "max_position_embeddings must be positive");
        return config;
    }

    /// <summary>Writes this config as a Hugging Face <c>config.json</c> object.</summary>
    public string ToJson()
    {
        var d = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" },
            ["model_type"] = "llama",
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["vocab_size"] = VocabSize,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["hidden_act"] = "silu",
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["torch_dtype"] = TorchDtype ?? "float32",
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? EosTokenIds[0] : EosTokenIds,
            ["rope_scaling"] = RopeScaling is null ? null : new Dictionary<string, object>
            {
                ["rope_type"] = "llama3",
                ["factor"] = RopeScaling.Factor,
                ["low_freq_factor"] = RopeScaling.LowFreqFactor,
                ["high_freq_factor"] = RopeScaling.HighFreqFactor,
                ["original_max_position_embeddings"] = RopeScaling.OriginalMaxPositionEmbeddings,
            },
        };
        return JsonSerializer.Serialize(d, new JsonSerializerOptions { WriteIndented = true });
    }

    private static Llama3RopeScaling? ParseRopeScaling(JsonElement root, string source)
    {
        if (!root.TryGetProperty("rope_scaling", out var s) || s.ValueKind == JsonValueKind.Null) return null;
        if (s.ValueKind != JsonValueKind.Object) throw Bad(source, "rope_scaling must be an object or null");
        string? type = Str(s, "rope_type") ?? Str(s, "type");
        if (type == "default") return null;
        if (type != "llama3") throw Bad(source, $"rope_scaling.rope_type '{type ?? "(missing)"}' is not supported (supported: default, llama3)");
        var r = new Llama3RopeScaling(
            Double(s, "factor") ?? throw Bad(source, "rope_scaling.factor is missing"),
            Double(s, "low_freq_factor") ?? 1.0,
            Double(s, "high_freq_factor") ?? 4.0,
            Int(s, "original_max_position_embeddings") ?? 8192);
        if (r.Factor <= 0 || r.LowFreqFactor <= 0 || r.HighFreqFactor <= r.LowFreqFactor || r.OriginalMaxPositionEmbeddings <= 0)
            throw Bad(source, "rope_scaling needs factor > 0 and 0 < low_freq_factor < high_freq_factor");
        return r;
    }

    private static IReadOnlyList<int> ParseIds(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var e)) return [];
        return e.ValueKind switch
        {
            JsonValueKind.Number => [e.GetInt32()],
            JsonValueKind.Array => e.EnumerateArray().Select(x => x.GetInt32()).ToArray(),
            _ => [],
        };
    }

    private static InvalidDataException Bad(string source, string what) => new($"{source}: {what}.");

    private static int RequiredInt(JsonElement root, string name, string source)
    {
        int v = Int(root, name) ?? throw Bad(source, $"'{name}' is missing");
        return v > 0 ? v : throw Bad(source, $"'{name}' must be positive, got {v}");
    }

    private static int? Int(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    private static double? Double(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static bool? Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
