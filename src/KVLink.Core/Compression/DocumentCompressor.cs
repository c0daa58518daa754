namespace KVLink.Core.Compression;

/// <summary>
/// LLMLingua-style compression of a document's tokens before caching: keep the most informative
/// fraction (by <see cref="SelfInformation"/>), always keeping a protected header and structural tokens,
/// in their original order. Deterministic: the same tokens, model and fraction give the same result
/// (ties are broken by position).
/// </summary>
internal sealed class DocumentCompressor(ITokenScorer scorer)
{
    /// <summary>The scorer.</summary>
    public ITokenScorer Scorer { get; } = scorer ?? throw new ArgumentNullException(nameof(scorer));

    /// <summary>Throws unless 0 &lt; <paramref name="keepFraction"/> &lt;= 1.</summary>
    public static void Validate(double keepFraction)
    {
        if (!(keepFraction > 0 && keepFraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(keepFraction), keepFraction, "The kept fraction of a compressed document must be in (0, 1].");
    }

    /// <summary>
    /// The indices (ascending) of the tokens to keep: all of the first <paramref name="protectedPrefix"/>,
    /// every index in <paramref name="alwaysKeep"/>, and the highest-scoring others until
    /// ceil(<paramref name="keepFraction"/> x body length) body tokens are kept.
    /// </summary>
    public int[] Select(IReadOnlyList<int> tokens, double keepFraction, int protectedPrefix, IEnumerable<int>? alwaysKeep = null) =>
        Select(tokens, keepFraction, protectedPrefix, alwaysKeep, () => Scorer.Score(tokens));

    /// <summary>
    /// Like <see cref="Select(IReadOnlyList{int}, double, int, IEnumerable{int}?)"/>, with the tokens' scores from
    /// <paramref name="scores"/>, called only when some token can be dropped (the engine scores through its scheduler first).
    /// </summary>
    public static int[] Select(IReadOnlyList<int> tokens, double keepFraction, int protectedPrefix, IEnumerable<int>? alwaysKeep, Func<double[]> scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        Validate(keepFraction);
        ArgumentOutOfRangeException.ThrowIfNegative(protectedPrefix);
        protectedPrefix = Math.Min(protectedPrefix, tokens.Count);
        var keep = new SortedSet<int>(Enumerable.Range(0, protectedPrefix));
        foreach (int i in alwaysKeep ?? []) if (i >= 0 && i < tokens.Count) keep.Add(i);
        int body = tokens.Count - protectedPrefix;
        int target = protectedPrefix + (int)Math.Ceiling(keepFraction * body);
        if (keepFraction >= 1 || keep.Count >= tokens.Count) return [.. Enumerable.Range(0, tokens.Count)];

        double[] scored = scores();
        if (scored.Length != tokens.Count) throw new InvalidOperationException($"The scorer gave {scored.Length} scores for {tokens.Count} tokens.");
        var ranked = Enumerable.Range(protectedPrefix, body)
            .Where(i => !keep.Contains(i))
            .OrderByDescending(i => scored[i]).ThenBy(i => i);
        foreach (int i in ranked)
        {
            if (keep.Count >= target) break;
            keep.Add(i);
        }
        return [.. keep];
    }

    /// <summary>The kept tokens themselves, in order.</summary>
    public int[] Compress(IReadOnlyList<int> tokens, double keepFraction, int protectedPrefix, IEnumerable<int>? alwaysKeep = null) =>
        [.. Select(tokens, keepFraction, protectedPrefix, alwaysKeep).Select(i => tokens[i])];
}
