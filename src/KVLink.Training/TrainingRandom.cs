namespace KVLink.Training;

/// <summary>
/// A small seeded generator (SplitMix64) whose whole state is one number, so a trainer can save it and
/// resume drawing exactly where it stopped.
/// </summary>
public sealed class TrainingRandom
{
    /// <summary>Creates a generator from a seed.</summary>
    public TrainingRandom(ulong seed) => State = seed;

    /// <summary>The full state; assigning it restores a saved generator.</summary>
    public ulong State { get; set; }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong z = State += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform double in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform integer in [0, <paramref name="maxExclusive"/>).</summary>
    public int Next(int maxExclusive)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxExclusive);
        return (int)(NextUInt64() % (ulong)maxExclusive);
    }
}
