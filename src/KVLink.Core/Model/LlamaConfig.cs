using System.Text.Json;

namespace KVLink.Core.Model;

/// <summary>RoPE frequency scaling of Llama 3.1/3.2 (<c>rope_type: llama3</c>).</summary>
/// <param name="Factor">Divisor applied to low frequencies (32 for Llama 3.2, 8 for 3.1).</param>
/// <param name="LowFreqFactor">Wavelengths above <c>original/low</c> are fully scaled.</param>
/// <param name="HighFreqFactor">Wavelengths below <c>original/high</c> are kept.</param>
/// <param name="OriginalMaxPositionEmbeddings">Context length the model was pre-trained with (8192).</param>
internal sealed record Llama3RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>The parts of a Hugging Face <c>config.json</c> (model_type <c>llama</c>) that define the transformer.</summary>
internal sealed record LlamaConfig
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

    /// <summary>Reads and validates a <c>config.json</c> (a regular file of at most 1 MiB).</summary>
    /// <exception cref="InvalidDataException">The file is not a supported Llama config, or a value is of the wrong
    /// kind or outside <see cref="LlamaConfigLimits"/>; the message names the file and the field.</exception>
    public static LlamaConfig Load(string path)
    {
        using var doc = IO.UntrustedJson.ParseObject(IO.UntrustedFile.ReadAllBytes(path, IO.UntrustedFile.SmallJsonMaxBytes), path);
        return FromJson(doc.RootElement, path);
    }

    /// <summary>Builds a config from an already-parsed <c>config.json</c> element.</summary>
    /// <exception cref="InvalidDataException">As for <see cref="Load"/>.</exception>
    public static LlamaConfig FromJson(JsonElement root, string source = "config.json")
    {
        // Every field is read with its kind and range checked; this is a safety net for anything that slips past.
        try { return FromJsonCore(root, source); }
        catch (Exception e) when (e is FormatException or InvalidOperationException or OverflowException)
        {
            throw new InvalidDataException($"{source}: a field has a value of the wrong type or range ({e.Message}).", e);
        }
    }

    private static LlamaConfig FromJsonCore(JsonElement root, string source)
    {
        if (root.ValueKind != JsonValueKind.Object) throw Bad(source, "the root is not a JSON object");
        var f = new ConfigJsonFields(root, source);
        string? modelType = f.String("model_type");
        if (modelType != "llama")
            throw Bad(source, $"model_type is '{modelType ?? "(missing)"}', only 'llama' is supported");
        if (f.Bool("attention_bias") == true || f.Bool("mlp_bias") == true)
            throw Bad(source, "attention_bias/mlp_bias are not supported (Llama has none)");

        int hidden = f.RequiredInt("hidden_size", 1, LlamaConfigLimits.MaxHiddenSize);
        int heads = f.RequiredInt("num_attention_heads", 1, LlamaConfigLimits.MaxHeads);
        int kvHeads = f.Int("num_key_value_heads", 1, heads) ?? heads;
        if (heads % kvHeads != 0) throw Bad(source, $"num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kvHeads})");
        int headDim = f.Int("head_dim", 1, LlamaConfigLimits.MaxHeadDim)
            ?? (hidden % heads == 0 ? hidden / heads : throw Bad(source, "hidden_size is not divisible by num_attention_heads and head_dim is missing"));
        if (headDim % 2 != 0) throw Bad(source, $"head_dim ({headDim}) must be even for RoPE");
        if (headDim > LlamaConfigLimits.MaxHeadDim) throw f.Bad("head_dim", $"(hidden_size / num_attention_heads = {headDim}) must be at most {LlamaConfigLimits.MaxHeadDim}");
        if (checked((long)heads * headDim) > LlamaConfigLimits.MaxAttentionWidth)
            throw Bad(source, $"num_attention_heads x head_dim ({heads} x {headDim}) exceeds {LlamaConfigLimits.MaxAttentionWidth}");
        int vocab = f.RequiredInt("vocab_size", 1, LlamaConfigLimits.MaxVocabSize);

        return new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = f.RequiredInt("intermediate_size", 1, LlamaConfigLimits.MaxIntermediateSize),
            NumHiddenLayers = f.RequiredInt("num_hidden_layers", 1, LlamaConfigLimits.MaxLayers),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            VocabSize = vocab,
            RmsNormEps = f.Double("rms_norm_eps", LlamaConfigLimits.MinRmsNormEps, LlamaConfigLimits.MaxRmsNormEps) ?? 1e-6,
            RopeTheta = f.Double("rope_theta", LlamaConfigLimits.MinRopeThetaExclusive, LlamaConfigLimits.MaxRopeTheta, minExclusive: true) ?? 10000.0,
            RopeScaling = ParseRopeScaling(root, source),
            MaxPositionEmbeddings = f.Int("max_position_embeddings", 1, LlamaConfigLimits.MaxPositions) ?? 2048,
            TieWordEmbeddings = f.Bool("tie_word_embeddings") ?? false,
            BosTokenId = f.Int("bos_token_id", 0, vocab - 1),
            EosTokenIds = f.Ids("eos_token_id", vocab - 1),
            TorchDtype = f.String("torch_dtype"),
        };
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
        var f = new ConfigJsonFields(s, source, "rope_scaling.");
        string? type = f.String("rope_type") ?? f.String("type");
        if (type == "default") return null;
        if (type != "llama3") throw Bad(source, $"rope_scaling.rope_type '{type ?? "(missing)"}' is not supported (supported: default, llama3)");
        var r = new Llama3RopeScaling(
            f.Double("factor", LlamaConfigLimits.MinRopeFactor, LlamaConfigLimits.MaxRopeFactor) ?? throw f.Bad("factor", "is missing"),
            f.Double("low_freq_factor", 0, LlamaConfigLimits.MaxRopeFactor, minExclusive: true) ?? 1.0,
            f.Double("high_freq_factor", 0, LlamaConfigLimits.MaxRopeFactor, minExclusive: true) ?? 4.0,
            f.Int("original_max_position_embeddings", 1, LlamaConfigLimits.MaxPositions) ?? 8192);
        if (r.HighFreqFactor <= r.LowFreqFactor)
            throw Bad(source, $"rope_scaling needs low_freq_factor ({r.LowFreqFactor}) < high_freq_factor ({r.HighFreqFactor})");
        return r;
    }

    private static InvalidDataException Bad(string source, string what) => new($"{source}: {what}.");
}
