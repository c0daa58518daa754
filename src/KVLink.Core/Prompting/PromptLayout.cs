namespace KVLink.Core.Prompting;

/// <summary>Where one document's tokens sit in a prompt.</summary>
/// <param name="Slot">0-based slot (the document's rank in the prompt).</param>
/// <param name="Start">Global position of its first token.</param>
/// <param name="TokenIds">Its tokens, encoded alone.</param>
internal sealed record DocumentSpan(int Slot, int Start, IReadOnlyList<int> TokenIds)
{
    /// <summary>Number of tokens.</summary>
    public int Length => TokenIds.Count;
}

/// <summary>
/// A whole prompt as token ids with the segment of each token: 0 for everything computed per
/// query (BOS, system prompt, memory markers, link tokens, question, generation header) and
/// <c>slot + 1</c> for the tokens of the document in that slot.
/// </summary>
internal sealed class PromptLayout
{
    /// <summary>Creates a layout; <paramref name="tokens"/> and <paramref name="segments"/> have equal length.</summary>
    public PromptLayout(IReadOnlyList<int> tokens, IReadOnlyList<int> segments, IReadOnlyList<DocumentSpan> documents, int prefixLength = 0)
    {
        if (prefixLength < 0 || prefixLength > tokens.Count || (documents.Count > 0 && prefixLength > documents[0].Start))
            throw new ArgumentOutOfRangeException(nameof(prefixLength), prefixLength, "The prefix must end before the first document.");
        PrefixLength = prefixLength;
        if (tokens.Count != segments.Count) throw new ArgumentException("Every token needs a segment id.", nameof(segments));
        Tokens = tokens;
        Segments = segments;
        Documents = documents;
    }

    /// <summary>All token ids, in order.</summary>
    public IReadOnlyList<int> Tokens { get; }

    /// <summary>Segment of each token.</summary>
    public IReadOnlyList<int> Segments { get; }

    /// <summary>The documents, by slot.</summary>
    public IReadOnlyList<DocumentSpan> Documents { get; }

    /// <summary>
    /// Leading tokens that are the same for every request of a format (BOS, system turn, user header, memory start).
    /// They attend only to each other, so their cache can be computed once and reused.
    /// </summary>
    public int PrefixLength { get; }

    /// <summary>Total number of tokens.</summary>
    public int Length => Tokens.Count;

    /// <summary>Number of document tokens (those a cache can supply).</summary>
    public int DocumentTokenCount => Documents.Sum(d => d.Length);

    /// <summary>Global positions of the segment-0 tokens at or after <paramref name="from"/>: those computed for every query.</summary>
    public long[] ComputedPositions(int from = 0) =>
        [.. Enumerable.Range(from, Length - from).Where(i => Segments[i] == 0).Select(i => (long)i)];
}
