namespace KVLink.Core.Model;

/// <summary>
/// Bounds every <c>config.json</c> number must satisfy (docs/reliability.md). They are several times the largest
/// published Llama (3.1 405B: hidden 16384, intermediate 53248, 126 layers, 128 heads, head_dim 128, vocab 128256),
/// and small enough that no product of them overflows a 64-bit count. They are sanity bounds only: what bounds the
/// memory a load allocates is the check of every expected tensor against the safetensors header before the model is built.
/// </summary>
internal static class LlamaConfigLimits
{
    /// <summary>Largest <c>hidden_size</c> (2^16).</summary>
    public const int MaxHiddenSize = 1 << 16;
    /// <summary>Largest <c>intermediate_size</c> (2^18).</summary>
    public const int MaxIntermediateSize = 1 << 18;
    /// <summary>Largest <c>num_hidden_layers</c>.</summary>
    public const int MaxLayers = 1024;
    /// <summary>Largest <c>num_attention_heads</c> (and so <c>num_key_value_heads</c>).</summary>
    public const int MaxHeads = 1024;
    /// <summary>Largest <c>head_dim</c>; it must also be even (RoPE rotates pairs).</summary>
    public const int MaxHeadDim = 1024;
    /// <summary>Largest width of the query projection, <c>num_attention_heads × head_dim</c> (2^18).</summary>
    public const int MaxAttentionWidth = 1 << 18;
    /// <summary>Largest <c>vocab_size</c> (2^24, the largest token id a tokenizer file may hold + 1).</summary>
    public const int MaxVocabSize = 1 << 24;
    /// <summary>Largest <c>max_position_embeddings</c> and <c>rope_scaling.original_max_position_embeddings</c> (2^24).</summary>
    public const int MaxPositions = 1 << 24;
    /// <summary>Smallest <c>rms_norm_eps</c>: still a normal fp32/bf16 number, so it is not flushed to zero.</summary>
    public const double MinRmsNormEps = 1e-30;
    /// <summary>Largest <c>rms_norm_eps</c>.</summary>
    public const double MaxRmsNormEps = 1;
    /// <summary><c>rope_theta</c> must exceed this: frequencies fall with the dimension only for a base above 1.</summary>
    public const double MinRopeThetaExclusive = 1;
    /// <summary>Largest <c>rope_theta</c>: every inverse frequency stays at least 1e-12, a normal fp32 number.</summary>
    public const double MaxRopeTheta = 1e12;
    /// <summary>Smallest <c>rope_scaling.factor</c> (1 = no scaling).</summary>
    public const double MinRopeFactor = 1;
    /// <summary>Largest <c>rope_scaling.factor</c>, <c>low_freq_factor</c> and <c>high_freq_factor</c>.</summary>
    public const double MaxRopeFactor = 1024;
}
