using System.Text.Json;
using KVLink.Core.Prompting;

namespace KVLink.Training;

/// <summary>
/// Reads JSONL training files, one JSON object per line (blank lines are skipped):
/// QA samples <c>{"documents":[{"title":...,"text":...}], "question":..., "answer":...}</c> and
/// plain-text samples <c>{"text":...}</c>. Errors name the file and the line.
/// </summary>
public static class TrainingDataReader
{
    /// <summary>Reads every QA sample of <paramref name="path"/>.</summary>
    /// <exception cref="TrainingDataException">A line is not JSON, not an object, or lacks a field.</exception>
    public static IReadOnlyList<QaSample> ReadQa(string path) => [.. Lines(path).Select(l => ParseQa(path, l.Line, l.Root))];

    /// <summary>Reads every plain-text sample of <paramref name="path"/>.</summary>
    /// <exception cref="TrainingDataException">A line is not JSON, not an object, or lacks <c>text</c>.</exception>
    public static IReadOnlyList<TextSample> ReadText(string path) => [.. Lines(path).Select(l => new TextSample(RequiredString(path, l.Line, l.Root, "text")))];

    /// <summary>Writes QA samples as JSONL (the format <see cref="ReadQa"/> reads).</summary>
    public static void WriteQa(string path, IEnumerable<QaSample> samples)
    {
        using var writer = new StreamWriter(path, append: false, new System.Text.UTF8Encoding(false)) { NewLine = "\n" };
        foreach (var s in samples)
        {
            var obj = new
            {
                documents = s.Documents.Select(d => new { title = d.Title ?? "", text = d.Text }),
                question = s.Question,
                answer = s.Answer,
                follow_ups = (s.FollowUps ?? []).Select(f => new { question = f.Question, answer = f.Answer }),
            };
            writer.WriteLine(JsonSerializer.Serialize(obj));
        }
    }

    private static IEnumerable<(int Line, JsonElement Root)> Lines(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"Training data file '{path}' does not exist.", path);
        int number = 0;
        foreach (var line in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonElement root;
            try
            {
                using var doc = JsonDocument.Parse(line);
                root = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new TrainingDataException(path, number, $"invalid JSON ({e.Message})", e);
            }
            if (root.ValueKind != JsonValueKind.Object) throw new TrainingDataException(path, number, $"expected a JSON object, found {root.ValueKind}.");
            yield return (number, root);
        }
    }

    private static QaSample ParseQa(string path, int line, JsonElement root)
    {
        if (!root.TryGetProperty("documents", out var docs)) throw new TrainingDataException(path, line, "missing field 'documents'.");
        if (docs.ValueKind != JsonValueKind.Array) throw new TrainingDataException(path, line, "field 'documents' must be an array.");
        var documents = new List<KvLinkDocument>();
        int i = 0;
        foreach (var d in docs.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Object) throw new TrainingDataException(path, line, $"documents[{i}] must be an object.");
            string text = RequiredString(path, line, d, "text", $"documents[{i}].");
            string? title = d.TryGetProperty("title", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            documents.Add(new KvLinkDocument(text, title));
            i++;
        }
        List<QaTurn>? followUps = null;
        if (root.TryGetProperty("follow_ups", out var turns))
        {
            if (turns.ValueKind != JsonValueKind.Array) throw new TrainingDataException(path, line, "field 'follow_ups' must be an array.");
            followUps = [];
            int t = 0;
            foreach (var turn in turns.EnumerateArray())
            {
                if (turn.ValueKind != JsonValueKind.Object) throw new TrainingDataException(path, line, $"follow_ups[{t}] must be an object.");
                followUps.Add(new QaTurn(RequiredString(path, line, turn, "question", $"follow_ups[{t}]."), RequiredString(path, line, turn, "answer", $"follow_ups[{t}].")));
                t++;
            }
        }
        return new QaSample(documents, RequiredString(path, line, root, "question"), RequiredString(path, line, root, "answer"), followUps is { Count: > 0 } ? followUps : null);
    }

    private static string RequiredString(string path, int line, JsonElement obj, string name, string prefix = "")
    {
        if (!obj.TryGetProperty(name, out var v)) throw new TrainingDataException(path, line, $"missing field '{prefix}{name}'.");
        if (v.ValueKind != JsonValueKind.String) throw new TrainingDataException(path, line, $"field '{prefix}{name}' must be a string, found {v.ValueKind}.");
        return v.GetString()!;
    }
}
