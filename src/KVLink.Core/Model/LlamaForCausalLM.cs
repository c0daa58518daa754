using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// The Llama decoder stack with its language-model head, parameter names and shapes identical to
/// Hugging Face's <c>LlamaForCausalLM</c> (<c>model.layers.N.self_attn.q_proj.weight</c>, ..., <c>lm_head.weight</c>).
/// </summary>
/// <remarks>
/// Parameters are allocated uninitialised; load them with <c>LlamaCheckpoint.Load</c>. A forward step
/// takes explicit positions (which are also the tokens' places in the KV cache) and an explicit boolean mask, so the
/// same code serves plain causal prefill, decode, and KVLink's segment-masked passes.
/// </remarks>
internal sealed class LlamaForCausalLM : nn.Module
{
    private readonly LlamaBackbone model;
    private readonly Projection lm_head;

    /// <summary>Creates an uninitialised model for <paramref name="config"/> (use <c>torch.META</c> to allocate nothing).</summary>
    public LlamaForCausalLM(LlamaConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null) : base("LlamaForCausalLM")
    {
        device ??= CPU;
        Config = config;
        DType = dtype;
        Device = device;
        Rope = new RotaryEmbedding(config);
        WeightBytes = LlamaTensorShapes.Of(config).Sum(e => e.Shape.Aggregate(1L, (n, d) => n * d)) * ElementSize;
        model = new LlamaBackbone(config, dtype, device);
        // A tied head shares the embedding's storage; an untied one has its own weight.
        lm_head = config.TieWordEmbeddings
            ? new Projection("lm_head", model.EmbedTokens.Weight)
            : new Projection("lm_head", config.HiddenSize, config.VocabSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>The configuration the model was built from.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Compute dtype of every parameter.</summary>
    public ScalarType DType { get; }

    /// <summary>Device of every parameter.</summary>
    public Device Device { get; }

    /// <summary>The model's rotary embedding (also used to re-rotate cached keys).</summary>
    public RotaryEmbedding Rope { get; }

    /// <summary>Bytes of one element of <see cref="DType"/>.</summary>
    public int ElementSize => DType switch { ScalarType.Float64 => 8, ScalarType.Float32 => 4, _ => 2 };

    /// <summary>Bytes of the parameters in the compute dtype: the shapes the config implies (<see cref="LlamaTensorShapes"/>).</summary>
    public long WeightBytes { get; }

    /// <summary>Bytes of keys and values per cached token, over every layer, in the model's dtype.</summary>
    public long CacheBytesPerToken => 2L * Config.NumHiddenLayers * Config.NumKeyValueHeads * Config.HeadDim * ElementSize;

    /// <summary>Buffers of finished sequences' caches, reused by <see cref="AttentionCache.Rent"/>; freed with the model.</summary>
    public AttentionCachePool CachePool { get; } = new();

    /// <summary>
    /// Weight-only int8 for decoding: adds an int8 copy (one scale per output channel) of every projection and of the
    /// vocabulary head, which single-token steps then multiply with, reading half the bytes of bf16; prompts (many
    /// tokens) keep the full-precision GEMMs. Call after the weights are loaded: the copies are snapshots. CPU only, and
    /// only where a vector decode kernel serves the CPU (AVX-512F, AVX2+FMA or ARM64 AdvSimd). Returns the bytes the copies hold.
    /// </summary>
    /// <exception cref="NotSupportedException">The model is not on the CPU, or the CPU has no vector decode kernel (the message names it).</exception>
    public long QuantizeInt8ForDecoding()
    {
        if (Device.type != DeviceType.CPU) throw new NotSupportedException("Int8 decoding weights are a CPU path; the model is on " + Device + ".");
        DecodeGemv.RequireVectorPath("DecodeWithInt8Weights"); // before any copy is made: nothing half-quantized
        long bytes = model.QuantizeInt8();
        lm_head.QuantizeInt8();
        return bytes + lm_head.Int8!.Bytes;
    }

    /// <summary>
    /// For float32 compute on the CPU: adds a bf16 copy of every projection and of the vocabulary head, which decoding
    /// rows then multiply with through the bandwidth kernel (<see cref="DecodeRows"/>), reading half the bytes of the
    /// float32 weights; prompts, documents and link passes keep the float32 GEMMs, so caches and first tokens are exactly
    /// float32's. Does nothing for other dtypes. Call after the weights are loaded (snapshots). Returns the copies' bytes.
    /// </summary>
    public long KeepBf16ForDecoding()
    {
        if (Device.type != DeviceType.CPU) throw new NotSupportedException("bf16 decoding copies are a CPU path; the model is on " + Device + ".");
        if (DType != ScalarType.Float32) return 0;
        return model.KeepBf16ForDecoding() + lm_head.KeepBf16ForDecoding();
    }

    /// <summary>
    /// Builds the per-step inputs for new tokens at <paramref name="positions"/> with <paramref name="mask"/>. With a
    /// <paramref name="cache"/> it is a batched step of one sequence (<see cref="BatchStep"/>): every cached forward, the
    /// scheduler's and a direct caller's alike, takes that one path. Without, it is a cache-free forward over the new
    /// tokens alone (training, scoring), mask [T, T] or [B, T, T]. The leading <paramref name="decode"/> rows are decoding rows.
    /// </summary>
    public ForwardStep Step(long[] positions, Tensor mask, AttentionCache? cache, DecodeRows decode = default)
    {
        if (cache is not null)
            return BatchStep(positions, [new SequenceRows(0, positions.Length, tensor(positions, device: Device), positions.Max(), mask, cache)], decode);
        using var at = tensor(positions, device: Device);
        var (cos, sin) = Rope.Angles(at);
        return new ForwardStep(cos, sin, mask) { Decode = decode };
    }

    /// <summary>
    /// Builds a batched step: the new tokens of several sequences, concatenated as rows, at <paramref name="positions"/>
    /// (one per row; RoPE angles follow them), each sequence attending to its own cache (<see cref="SequenceRows"/>).
    /// </summary>
    public ForwardStep BatchStep(long[] positions, IReadOnlyList<SequenceRows> sequences, DecodeRows decode = default)
    {
        using var at = tensor(positions, device: Device);
        var (cos, sin) = Rope.Angles(at);
        return new ForwardStep(cos, sin, empty([0], ScalarType.Bool, Device), sequences) { Decode = decode };
    }

    /// <summary>Final hidden states ([B, T, hidden]) of tokens ([B, T] int64) for one step.</summary>
    public Tensor Hidden(Tensor tokens, ForwardStep step) => Hidden(tokens, step, lastOnly: false);

    /// <summary>
    /// Final hidden states of a step; with <paramref name="lastOnly"/> only the last token's ([B, 1, hidden]):
    /// every token's keys and values are still cached, but the last layer skips the other tokens' queries,
    /// attention output and MLP, whose results nothing reads.
    /// </summary>
    public Tensor Hidden(Tensor tokens, ForwardStep step, bool lastOnly)
    {
        var h = model.Forward(tokens, step, lastOnly);
        if (step.Sequences is { } sequences)
            foreach (var s in sequences) s.Cache.Advance((int)s.MaxPosition + 1);
        return h;
    }

    /// <summary>Vocabulary logits ([B, T, vocab]) of hidden states, the leading <paramref name="decode"/> rows through the decode kernel.</summary>
    public Tensor Logits(Tensor hidden, DecodeRows decode = default) => lm_head.Forward(hidden, decode);

    /// <summary>
    /// Logits for one step; with <paramref name="lastOnly"/> only the last token's ([B, 1, vocab]),
    /// which spares the vocabulary projection of every prompt token during prefill.
    /// </summary>
    public Tensor Forward(Tensor tokens, ForwardStep step, bool lastOnly = false)
    {
        using var scope = NewDisposeScope();
        var h = Hidden(tokens, step, lastOnly);
        return Logits(h, step.Decode).MoveToOuterDisposeScope();
    }

    /// <summary>A plain causal forward over <paramref name="tokens"/> at positions 0..T-1 without a cache (all logits).</summary>
    public Tensor Forward(Tensor tokens)
    {
        using var scope = NewDisposeScope();
        long[] positions = [.. Enumerable.Range(0, (int)tokens.shape[1]).Select(i => (long)i)];
        var step = Step(positions, AttentionMasks.CausalSelf(positions, Device), null);
        return Forward(tokens, step).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) CachePool.Dispose();
        base.Dispose(disposing);
    }
}
