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
    private KeyPrefixChunks.Chunk[]? _chunks;
    private bool _planned;
    private Dictionary<(int Chunk, int G, ScalarType DType), Tensor>? _chunkMasks;

    /// <summary>Fewest rows, and fewest keys, for which a step's rows are split into key-prefix runs: below, one attention call is cheap anyway (decoding steps).</summary>
    internal const int ChunkMinRows = 16, ChunkMinKeys = 512;

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

    /// <summary>
    /// The rows split into runs that each attend over a prefix of the keys (<see cref="KeyPrefixChunks"/>), from the last
    /// key each row of <see cref="Mask"/> may see; null when one attention call over all rows is cheapest. Planned once per
    /// step and shared by every layer (a query row against one key costs <paramref name="flopsPerRowKey"/>).
    /// </summary>
    public KeyPrefixChunks.Chunk[]? KeyChunks(double flopsPerRowKey)
    {
        if (KeyPrefixChunks.IsOff) return null;
        if (_planned) return _chunks;
        _planned = true;
        long keys = Mask.size(1);
        if (Count < ChunkMinRows || keys < ChunkMinKeys) return null;
        using var scope = NewDisposeScope();
        // One past the last visible key of each row: the largest (s + 1) where the row may attend.
        var last = Mask.to(ScalarType.Int32).mul_(arange(1, keys + 1, ScalarType.Int32, Mask.device)).amax([1]).cpu();
        _chunks = KeyPrefixChunks.Plan(last.data<int>().ToArray(), flopsPerRowKey);
        return _chunks;
    }

    /// <summary>The mask of run <paramref name="chunk"/> of <see cref="KeyChunks"/> (its rows, its key prefix), folded as <see cref="FoldedMask"/> is; built once per step.</summary>
    public Tensor FoldedChunkMask(int chunk, int g, ScalarType dtype)
    {
        _chunkMasks ??= [];
        if (!_chunkMasks.TryGetValue((chunk, g, dtype), out var folded))
        {
            var c = _chunks![chunk];
            using (var part = Mask.narrow(0, c.Start, c.Count).narrow(1, 0, c.Keys)) folded = GroupedAttention.Fold(part, g, dtype);
            folded.MoveToOtherDisposeScope(Mask);
            _chunkMasks[(chunk, g, dtype)] = folded;
        }
        return folded;
    }
}
