namespace KVLink.Core.Compression;

/// <summary>
/// The random-drop baseline: every token gets a pseudo-random score from a hash of the seed, its position and its id,
/// so compression with it keeps a random subset (still keeping the header and structural tokens). Deterministic.
/// Used to show that scoring by information matters.
/// </summary>
internal sealed class RandomTokenScorer(ulong seed = 0) : ITokenScorer
{
    /// <inheritdoc/>
    public string Name => $"random-{seed}";

    /// <inheritdoc/>
    public double[] Score(IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var scores = new double[tokens.Count];
        for (int i = 0; i < scores.Length; i++)
        {
            // SplitMix64 finaliser of (seed, position, token).
            ulong z = seed + 0x9E3779B97F4A7C15UL * (ulong)(i + 1) + ((ulong)(uint)tokens[i] << 32);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            scores[i] = (z ^ (z >> 31)) >> 11;
        }
        return scores;
    }
}
