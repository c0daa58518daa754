namespace KVLink.Core.Compression;

/// <summary>Scores the tokens of a document; <see cref="DocumentCompressor"/> keeps the highest-scoring ones.</summary>
public interface ITokenScorer
{
    /// <summary>
    /// A name that identifies the scorer and its settings; it is part of the id of every compressed document,
    /// so caches made with different scorers never mix.
    /// </summary>
    string Name { get; }

    /// <summary>One score per token (higher = more worth keeping). Must be deterministic.</summary>
    double[] Score(IReadOnlyList<int> tokens);
}
