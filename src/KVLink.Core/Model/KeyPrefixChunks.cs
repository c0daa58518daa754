namespace KVLink.Core.Model;

/// <summary>
/// Splits a sequence's query rows into runs that each attend over a prefix of the keys: the keys up to the last one any
/// of the run's rows may see. Keys past that are masked for every row of the run, so leaving them out changes no result,
/// only the work: a causal step attends over a triangle, and one attention call over all rows computes the full
/// rectangle. KVLink's link pass is such a step (the link tokens of document j see the documents up to j, the question
/// sees all), and so is a long prefill. The plan is the cheapest split by rows × keys, plus a fixed cost per run for the
/// extra attention call.
/// </summary>
internal static class KeyPrefixChunks
{
    /// <summary>Rows [<paramref name="Start"/>, Start + <paramref name="Count"/>) of a sequence, attending over keys [0, <paramref name="Keys"/>).</summary>
    public readonly record struct Chunk(int Start, int Count, int Keys);

    /// <summary>
    /// The work of one more attention call (its launch, the copy of its query rows, the output's concatenation), as
    /// floating-point operations: about 40 µs at the ~100 GFLOP/s a 2-core CPU attends at.
    /// </summary>
    public const double CallCostFlops = 4e6;

    [ThreadStatic] private static bool t_off;
    [ThreadStatic] private static long t_split;

    /// <summary>Attention calls this thread split into key-prefix runs (tests: which path a forward took).</summary>
    public static long SplitOnThisThread => t_split;

    /// <summary>Whether this thread attends in one call whatever the plan (<see cref="Off"/>).</summary>
    public static bool IsOff => t_off;

    /// <summary>Counts one split attention call on this thread.</summary>
    public static void CountSplit() => t_split++;

    /// <summary>Attends in one call on this thread until disposed (tests: the reference the split must equal).</summary>
    public static OffScope Off()
    {
        var previous = t_off;
        t_off = true;
        return new OffScope(previous);
    }

    /// <summary>Restores the thread's choice from before <see cref="Off"/>.</summary>
    public readonly struct OffScope(bool previous) : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => t_off = previous;
    }

    /// <summary>Boundaries fall on multiples of rows/<see cref="MaxBlocks"/>, so planning costs O(rows × MaxBlocks) whatever the rows.</summary>
    private const int MaxBlocks = 64;

    /// <summary>
    /// The cheapest split of rows whose row t needs keys [0, <paramref name="keys"/>[t]), where a query row against one key
    /// costs <paramref name="flopsPerRowKey"/> (4 × heads × head_dim: scores and values); null when one run is cheapest.
    /// </summary>
    public static Chunk[]? Plan(ReadOnlySpan<int> keys, double flopsPerRowKey)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(flopsPerRowKey);
        int t = keys.Length;
        if (t < 2) return null;
        double callCost = CallCostFlops / flopsPerRowKey; // in rows × keys
        int block = (t + MaxBlocks - 1) / MaxBlocks, blocks = (t + block - 1) / block;
        var best = new double[blocks + 1];
        var from = new int[blocks + 1];
        for (int b = 1; b <= blocks; b++)
        {
            best[b] = double.MaxValue;
            int end = Math.Min(t, b * block), max = 1;
            for (int a = b - 1; a >= 0; a--)
            {
                for (int r = a * block; r < Math.Min(t, (a + 1) * block); r++) max = Math.Max(max, keys[r]);
                double cost = best[a] + (double)(end - a * block) * max + callCost;
                if (cost < best[b]) (best[b], from[b]) = (cost, a);
            }
        }
        var chunks = new List<Chunk>();
        for (int b = blocks; b > 0; b = from[b])
        {
            int start = from[b] * block, end = Math.Min(t, b * block), max = 1; // a run attends over one key at least
            for (int r = start; r < end; r++) max = Math.Max(max, keys[r]);
            chunks.Add(new Chunk(start, end - start, max));
        }
        if (chunks.Count == 1) return null;
        chunks.Reverse();
        return [.. chunks];
    }
}
