using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// What every layer of one forward step shares: the new tokens' RoPE angles and how they attend. Either the rows of one
/// or more sequences, each attending to its own cache (<paramref name="Sequences"/>: every cached forward, batched by the
/// engine's scheduler or run alone), or a cache-free forward over the new tokens alone under <paramref name="Mask"/>
/// (training and scoring).
/// </summary>
/// <param name="Cos">RoPE cos for the new tokens, fp32 [T, head_dim].</param>
/// <param name="Sin">RoPE sin for the new tokens, fp32 [T, head_dim].</param>
/// <param name="Mask">A cache-free step's mask: bool [T, T], true where query t may attend key s, or one per sequence of
/// a padded batch, bool [B, T, T] (batched training). Empty for a step of sequences.</param>
/// <param name="Sequences">The sequences of a cached step (<see cref="SequenceRows"/>); null for a cache-free step.</param>
internal sealed record ForwardStep(Tensor Cos, Tensor Sin, Tensor Mask, IReadOnlyList<SequenceRows>? Sequences = null)
{
    private readonly Dictionary<(int Start, int Rows, int G, ScalarType DType), Tensor> _folded = [];

    /// <summary>The step's leading decoding rows, which the projections multiply through the decode kernel (none by default).</summary>
    public DecodeRows Decode { get; init; }
    private Tensor? _outputRows, _padding;

    /// <summary>
    /// The attention output of a padded step's rows after its last sequence (<c>RowBuckets</c>): zeros [1, heads, rows, d],
    /// built once per step and shared by every layer, in the scope the step was made in.
    /// </summary>
    public Tensor PaddingOutput(long heads, long rows, long d, ScalarType dtype)
    {
        if (_padding is null || _padding.dtype != dtype)
        {
            _padding = zeros([1, heads, rows, d], dtype, Cos.device);
            _padding.MoveToOtherDisposeScope(Cos);
        }
        return _padding;
    }

    /// <summary>
    /// True for a step of sequences whose every row's output is wanted (a step of decoding rows alone, a scoring chunk of
    /// output rows only): the output rows are then all rows, in order, and a forward for them alone is the full forward.
    /// </summary>
    public bool EveryRowOutputs
    {
        get
        {
            if (Sequences is not { } sequences) return false;
            for (int i = 0; i < sequences.Count; i++)
                if (!sequences[i].Output || sequences[i].Outputs != sequences[i].Count) return false;
            return true;
        }
    }

    /// <summary>
    /// For a batched step: the rows whose final hidden states are wanted (the last <see cref="SequenceRows.Outputs"/> rows
    /// of each sequence with <see cref="SequenceRows.Output"/>), int64 [outputs], in sequence order; built once per step.
    /// </summary>
    public Tensor OutputRows()
    {
        if (_outputRows is null)
        {
            var sequences = Sequences ?? throw new InvalidOperationException("Only a step of sequences has output rows.");
            var rows = new List<long>(sequences.Count);
            foreach (var r in sequences)
                if (r.Output)
                    for (int i = r.Start + r.Count - r.Outputs; i < r.Start + r.Count; i++) rows.Add(i);
            _outputRows = tensor(rows.ToArray(), ScalarType.Int64, Cos.device);
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
