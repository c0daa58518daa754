namespace KVLink.Core.Generation;

/// <summary>
/// Text-level stop sequences over a stream of text deltas. A stop sequence may span any number of tokens, so text
/// that could still be the start of one is held back: <see cref="Push"/> only releases text that can no longer
/// become part of a match, and nothing released is ever retracted. On a match the text before it is released,
/// the stop sequence and everything after it are dropped, and <see cref="Stopped"/> turns true.
/// </summary>
internal sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private readonly System.Text.StringBuilder _held = new();

    /// <summary>Creates a matcher; empty or null sequences are refused (they would stop before any text).</summary>
    /// <exception cref="ArgumentException">A stop sequence is empty.</exception>
    public StopSequenceMatcher(IEnumerable<string> stopSequences)
    {
        ArgumentNullException.ThrowIfNull(stopSequences);
        _stops = [.. stopSequences];
        for (int i = 0; i < _stops.Length; i++)
            if (string.IsNullOrEmpty(_stops[i])) throw new ArgumentException($"Stop sequence #{i} is empty.", nameof(stopSequences));
    }

    /// <summary>True once a stop sequence has been seen; later pushes release nothing.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Adds text; returns the part that is now safe to emit (possibly empty).</summary>
    public string Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Stopped) return "";
        _held.Append(text);
        string held = _held.ToString();
        // The earliest complete match wins (a later-starting but shorter sequence must not cut earlier text).
        int cut = -1;
        foreach (string stop in _stops)
        {
            int at = held.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _held.Clear();
            return held[..cut];
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence: it may still complete.
        int keep = 0;
        foreach (string stop in _stops)
            for (int n = Math.Min(stop.Length - 1, held.Length); n > keep; n--)
                if (string.CompareOrdinal(held, held.Length - n, stop, 0, n) == 0) { keep = n; break; }
        // Never split a surrogate pair between what is released and what is held.
        if (keep > 0 && keep < held.Length && char.IsLowSurrogate(held[^keep])) keep++;
        _held.Clear().Append(held, held.Length - keep, keep);
        return held[..^keep];
    }

    /// <summary>Ends the stream: returns whatever was held back (it did not become a stop sequence).</summary>
    public string Flush()
    {
        if (Stopped) return "";
        string rest = _held.ToString();
        _held.Clear();
        return rest;
    }
}
