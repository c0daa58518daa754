using KVLink.Core.Model;

namespace KVLink.Benchmarks;

/// <summary>
/// What the hardware needs at least for one forward, from first principles rather than from our own forward:
/// its FLOPs at the best bf16 GEMM rate measured in the same run, plus the weights read once at the measured read
/// bandwidth, plus bytes copied (cached keys/values placed, keys re-rotated in place) at the measured copy bandwidth.
/// The parts are added, not overlapped, as the issue defines it.
/// </summary>
/// <param name="Config">The model shape.</param>
/// <param name="GemmRate">Best bf16 GEMM rate of the run, FLOP/s.</param>
/// <param name="ReadBandwidth">Bytes read per second (streaming, all threads).</param>
/// <param name="CopyBandwidth">Bytes copied per second (tensor copy).</param>
internal sealed record PhysicalFloor(LlamaConfig Config, double GemmRate, double ReadBandwidth, double CopyBandwidth)
{
    private long Hidden => Config.HiddenSize;
    private long QOut => (long)Config.NumAttentionHeads * Config.HeadDim;
    private long KvOut => (long)Config.NumKeyValueHeads * Config.HeadDim;

    /// <summary>Bytes of every weight a forward reads (bf16): the layers' projections and the vocabulary head.</summary>
    public long WeightBytes => 2 * (Config.NumHiddenLayers * (Hidden * (2 * QOut + 2 * KvOut) + 3 * Hidden * Config.IntermediateSize) + (long)Config.VocabSize * Hidden);

    /// <summary>Bytes of keys plus values per token, all layers (bf16).</summary>
    public long KvBytesPerToken => 2L * 2 * Config.NumHiddenLayers * KvOut;

    /// <summary>
    /// FLOPs of a forward over new tokens at <paramref name="positions"/>, each attending to every cached position up to its own
    /// position (the whole cache before it), computing the final layer and the vocabulary head for the last position only.
    /// </summary>
    public double Flops(IReadOnlyList<long> positions)
    {
        long t = positions.Count;
        double keys = positions.Sum(p => (double)(p + 1));
        double last = positions[^1] + 1;
        double perTokenLinear = 2.0 * (Hidden * QOut + 2 * Hidden * KvOut + QOut * Hidden + 3 * Hidden * Config.IntermediateSize);
        double attentionPerKey = 4.0 * Config.NumAttentionHeads * Config.HeadDim; // QK^T and PV
        double full = (Config.NumHiddenLayers - 1) * (t * perTokenLinear + keys * attentionPerKey);
        double lastLayer = t * 2.0 * 2 * Hidden * KvOut + (perTokenLinear - 2.0 * 2 * Hidden * KvOut) + last * attentionPerKey;
        return full + lastLayer + 2.0 * Hidden * Config.VocabSize;
    }

    /// <summary>Seconds: compute + weights + copies of <paramref name="copiedBytes"/>.</summary>
    public double Seconds(IReadOnlyList<long> positions, double copiedBytes)
        => Flops(positions) / GemmRate + WeightBytes / ReadBandwidth + copiedBytes / CopyBandwidth;

    /// <summary>Floor of a KVLink request: the computed tokens' forward, placing the cached tokens, re-rotating the documents' keys.</summary>
    public double KvLinkMs(IReadOnlyList<long> computedPositions, long cachedTokens, long documentTokens)
        => 1000 * Seconds(computedPositions, cachedTokens * KvBytesPerToken + documentTokens * KvBytesPerToken / 2.0);

    /// <summary>Floor of a full prefill of <paramref name="tokens"/> tokens (its keys and values written once).</summary>
    public double FullPrefillMs(int tokens)
        => 1000 * Seconds([.. Enumerable.Range(0, tokens).Select(i => (long)i)], (double)tokens * KvBytesPerToken);

    /// <summary>Floor of one decoded token at cache length <paramref name="context"/>: its forward, its keys read once.</summary>
    /// <param name="context">Cache length.</param>
    /// <param name="weightBytesPerElement">2 for bf16 weights, 1 for int8 (scales are negligible).</param>
    public double DecodeMs(int context, double weightBytesPerElement = 2)
        => 1000 * (Flops([context]) / GemmRate + (WeightBytes * weightBytesPerElement / 2 + (double)context * KvBytesPerToken) / ReadBandwidth);
}
