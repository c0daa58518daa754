namespace KVLink.RagConsole;

/// <summary>
/// A small BM25 retriever over the indexed files: enough to pick which document caches a question
/// should use. Real applications bring their own retriever (vector search, BM25 service...).
/// </summary>
internal sealed class KeywordRetriever
{
    private readonly List<(string Id, string Name, Dictionary<string, int> Terms, int Length)> _docs = [];
    private readonly Dictionary<string, int> _documentFrequency = [];

    public void Add(string id, string name, string text)
    {
        var terms = new Dictionary<string, int>();
        foreach (var t in Tokenize(text)) terms[t] = terms.GetValueOrDefault(t) + 1;
        foreach (var t in terms.Keys) _documentFrequency[t] = _documentFrequency.GetValueOrDefault(t) + 1;
        _docs.Add((id, name, terms, terms.Values.Sum()));
    }

    public IReadOnlyList<(string Id, string Name, double Score)> Top(string query, int k)
    {
        double avg = _docs.Count == 0 ? 1 : _docs.Average(d => d.Length);
        var q = Tokenize(query).Distinct().ToList();
        return [.. _docs
            .Select(d => (d.Id, d.Name, Score: q.Sum(t => Bm25(d.Terms.GetValueOrDefault(t), d.Length, avg, _documentFrequency.GetValueOrDefault(t)))))
            .Where(d => d.Score > 0)
            .OrderByDescending(d => d.Score)
            .Take(k)];
    }

    private double Bm25(int tf, int length, double avgLength, int df)
    {
        if (tf == 0) return 0;
        double idf = Math.Log(1 + (_docs.Count - df + 0.5) / (df + 0.5));
        return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avgLength));
    }

    private static IEnumerable<string> Tokenize(string text) =>
        text.ToLowerInvariant().Split(text.Where(c => !char.IsLetterOrDigit(c)).Distinct().ToArray(), StringSplitOptions.RemoveEmptyEntries)
            .Where(t => t.Length > 2);
}
