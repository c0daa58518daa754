using System.Text.Json;
using KVLink.Core.Prompting;

namespace KVLink.Training.Evaluation;

/// <summary>One retrieval-QA evaluation question: its documents in prompt order, the question, every accepted answer and an optional kind label.</summary>
/// <param name="Documents">Retrieved documents, in prompt order.</param>
/// <param name="Question">The question.</param>
/// <param name="Answers">Gold answers; any one counts as correct.</param>
/// <param name="Kind">Label used to split results (e.g. "single-hop"), or null.</param>
public sealed record EvalQuestion(IReadOnlyList<KvLinkDocument> Documents, string Question, IReadOnlyList<string> Answers, string? Kind = null);

/// <summary>
/// Reads evaluation JSONL: <c>{"documents":[{"title","text"}], "question", "answer"}</c> as written by the synthetic corpus, and
/// NQ/HotpotQA-style lines with <c>"answers":[..]</c> and <c>"ctxs"</c> instead of documents. Lines without a question (plain
/// text) are skipped. An optional <c>"kind"</c> (or <c>"type"</c>, as in HotpotQA) string labels the question.
/// </summary>
public static class EvalJsonl
{
    /// <summary>Reads every question of <paramref name="path"/>.</summary>
    /// <exception cref="InvalidDataException">A line is malformed; the message names the file and line.</exception>
    public static List<EvalQuestion> Read(string path)
    {
        var list = new List<EvalQuestion>();
        int lineNo = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (Parse(doc.RootElement) is { } q) list.Add(q);
            }
            catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException($"{path}:{lineNo}: {e.Message}", e);
            }
        }
        return list;
    }

    /// <summary>Parses one JSON object; null when it has no question.</summary>
    public static EvalQuestion? Parse(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new FormatException("a line must be a JSON object");
        if (!e.TryGetProperty("question", out var q) || q.ValueKind != JsonValueKind.String) return null;
        var docs = new List<KvLinkDocument>();
        if (e.TryGetProperty("documents", out var ds) || e.TryGetProperty("ctxs", out ds))
            foreach (var d in ds.EnumerateArray())
                docs.Add(new KvLinkDocument(Str(d, "text") ?? throw new FormatException("a document has no text"), Str(d, "title")));
        var answers = new List<string>();
        if (e.TryGetProperty("answer", out var a) && a.ValueKind == JsonValueKind.String) answers.Add(a.GetString()!);
        if (e.TryGetProperty("answers", out var aa) && aa.ValueKind == JsonValueKind.Array)
            answers.AddRange(aa.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!));
        if (answers.Count == 0) throw new FormatException("a question needs \"answer\" or \"answers\"");
        return new EvalQuestion(docs, q.GetString()!, answers, Str(e, "kind") ?? Str(e, "type"));
    }

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
