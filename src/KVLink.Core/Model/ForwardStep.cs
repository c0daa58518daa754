using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// What every layer of one forward step shares: the new tokens' positions (which are also their
/// cache slots), their RoPE angles, the attention mask and the cache to read and write.
/// </summary>
/// <param name="Slots">Positions of the new tokens, int64 [T].</param>
/// <param name="MaxSlot">The largest value in <paramref name="Slots"/>, known on the host.</param>
/// <param name="Cos">RoPE cos for the new tokens, fp32 [T, head_dim].</param>
/// <param name="Sin">RoPE sin for the new tokens, fp32 [T, head_dim].</param>
/// <param name="Mask">Bool [T, S]: true where query t may attend key s. Without a cache S = T (the new tokens);
/// with a cache S = the cache length after this step, indexed by slot. A cache-free step over a padded batch of
/// sequences may give each its own mask, bool [B, T, T] (batched training).</param>
/// <param name="Cache">The KV cache, or null for a cache-free forward.</param>
/// <param name="Sequences">Set for a batched step of several sequences: each attends its own rows to its own cache
/// (<see cref="SequenceRows"/>), and <paramref name="Slots"/>, <paramref name="Mask"/> and <paramref name="Cache"/> are unused.</param>
internal sealed record ForwardStep(Tensor Slots, long MaxSlot, Tensor Cos, Tensor Sin, Tensor Mask, AttentionCache? Cache,
    IReadOnlyList<SequenceRows>? Sequences = null)
{
    private readonly Dictionary<(int Start, int Rows, int G, ScalarType DType), Tensor> _folded = [];

    /// <summary>The step's leading decoding rows, which the projections multiply through the decode kernel (none by default).</summary>
    public DecodeRows Decode { get; init; }
    private Tensor? _outputRows;

    /// <summary>
    /// For a batched step: the rows whose final hidden states are wanted (the last row of each sequence with
    /// <see cref="SequenceRows.Output"/>), int64 [outputs], in sequence order; built once per step.
    /// </summary>
    public Tensor OutputRows()
    {
        if (_outputRows is null)
        {
            var rows = (Sequences ?? throw new InvalidOperationException("Only a batched step has output rows."))
                .Where(r => r.Output).Select(r => (long)(r.Start + r.Count - 1)).ToArray();
            _outputRows = tensor(rows, ScalarType.Int64, Cos.device);
            _outputRows.MoveToOtherDisposeScope(Cos);
        }
        return _outputRows;
    }

    /// <summary>
    /// The mask of query rows [<paramref name="start"/>, start+rows) folded for G query heads per kv head
    /// (<see cref="GroupedAttention.Fold"/>), built once per step and shared by every layer. It lives as long as
    /// the dispose scope that was current when the step was created (the step's other tensors do too).
    /// </summary>
    public Tensor FoldedMask(int start, int rows, int g, ScalarType dtype)
    {
        var key = (start, rows, g, dtype);
        if (!_folded.TryGetValue(key, out var folded))
        {
            // The query axis is the second-to-last of both a [T, S] and a per-sequence [B, T, S] mask.
            using var rowsMask = Mask.narrow(Mask.dim() - 2, start, rows);
            folded = GroupedAttention.Fold(rowsMask, g, dtype);
            // Into the scope the step's mask was made in: it must outlive the layer that built it.
            folded.MoveToOtherDisposeScope(Mask);
            _folded[key] = folded;
        }
        return folded;
    }
}
