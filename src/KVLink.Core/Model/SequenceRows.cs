using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// One sequence's share of a batched forward step: rows [<paramref name="Start"/>, Start + <paramref name="Count"/>)
/// of the step's concatenated tokens, attending only to its own cache. Projections, MLP and norms run once over all
/// rows of the step; attention runs per sequence (ragged), which is exactly a block-diagonal mask over the rows.
/// </summary>
/// <param name="Start">First row of the sequence in the step.</param>
/// <param name="Count">Rows (new tokens) of the sequence.</param>
/// <param name="Positions">Positions of the new tokens, which are also their places in the cache, int64 [Count].</param>
/// <param name="MaxPosition">The largest value in <paramref name="Positions"/>, known on the host.</param>
/// <param name="Mask">Bool [Count, S]: query t may attend the key at position s of the sequence's own cache.</param>
/// <param name="Cache">The sequence's cache.</param>
/// <param name="Output">Whether the final hidden states of its last <see cref="Outputs"/> rows are wanted (a forward with
/// <c>lastOnly</c> computes the last layer's queries and MLP only for those rows; the others just write their keys and values).</param>
internal sealed record SequenceRows(int Start, int Count, Tensor Positions, long MaxPosition, Tensor Mask, AttentionCache Cache, bool Output = true)
{
    private Tensor? _folded, _foldedLast;

    /// <summary>
    /// How many of its last rows <see cref="Output"/> asks for: 1 (default: a generation wants the next token) up to
    /// <see cref="Count"/> (a scoring sequence wants every row's log-probabilities).
    /// </summary>
    public int Outputs
    {
        get;
        init => field = value >= 1 && value <= Count ? value : throw new ArgumentOutOfRangeException(nameof(Outputs), value, $"A sequence of {Count} rows can ask for 1 to {Count} outputs.");
    } = 1;

    /// <summary>
    /// <see cref="Mask"/> folded for G query heads per kv head (<see cref="GroupedAttention.Fold"/>), built once per step
    /// and shared by every layer; it lives in the dispose scope the mask was made in.
    /// </summary>
    public Tensor FoldedMask(int g, ScalarType dtype)
    {
        if (_folded is null || _folded.dtype != dtype)
        {
            _folded = GroupedAttention.Fold(Mask, g, dtype);
            _folded.MoveToOtherDisposeScope(Mask);
        }
        return _folded;
    }

    /// <summary>Like <see cref="FoldedMask"/>, for the last <see cref="Outputs"/> rows alone.</summary>
    public Tensor FoldedLastMask(int g, ScalarType dtype)
    {
        if (_foldedLast is null || _foldedLast.dtype != dtype)
        {
            using (var last = Mask.narrow(0, Count - Outputs, Outputs)) _foldedLast = GroupedAttention.Fold(last, g, dtype);
            _foldedLast.MoveToOtherDisposeScope(Mask);
        }
        return _foldedLast;
    }
}
