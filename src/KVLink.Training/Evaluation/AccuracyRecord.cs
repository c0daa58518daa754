using System.Text.Json;
using System.Text.Json.Serialization;

namespace KVLink.Training.Evaluation;

/// <summary>One measured row of an <see cref="AccuracyRecord"/>: a configuration of the checkpoint and its accuracy per question kind.</summary>
/// <param name="Method">The row's method, exactly as the Markdown table the measurement wrote names it.</param>
/// <param name="FullPrefill">True for full prefill (the upper bound), false for KVLink caches.</param>
/// <param name="LinkTokens">Link tokens per document (0 for full prefill).</param>
/// <param name="SingleHopPercent">Accuracy in percent on the single-hop questions.</param>
/// <param name="TwoHopPercent">Accuracy in percent on the two-hop questions.</param>
public sealed record AccuracyRecordRow(
    [property: JsonPropertyName("method")] string Method,
    [property: JsonPropertyName("full_prefill")] bool FullPrefill,
    [property: JsonPropertyName("link_tokens")] int LinkTokens,
    [property: JsonPropertyName("single_hop_percent")] double SingleHopPercent,
    [property: JsonPropertyName("two_hop_percent")] double TwoHopPercent);

/// <summary>
/// The measured accuracy of a checkpoint on the synthetic corpus's held-out split, stored next to its weights as
/// <c>accuracy.json</c>. The measurement that writes the Markdown table (docs/accuracy.md) writes this record too, so a
/// program can show the model's accuracy without the repository's docs: the record travels wherever the model folder does
/// (the <c>KVLink.Demo</c> package copies <c>models/kvlink-demo/</c>, this file included, next to an application).
/// It also names the split (corpus seed and questions per kind), so a program can draw its own questions from the very
/// questions the record was measured on.
/// </summary>
public sealed record AccuracyRecord
{
    /// <summary>The record's file name inside a checkpoint folder.</summary>
    public const string FileName = "accuracy.json";

    /// <summary>The checkpoint measured, relative to the repository root (e.g. <c>models/kvlink-demo</c>).</summary>
    [JsonPropertyName("checkpoint")]
    public required string Checkpoint { get; init; }

    /// <summary>The UTC date of the measurement.</summary>
    [JsonPropertyName("measured")]
    public required DateOnly Measured { get; init; }

    /// <summary>The document and table that show the same numbers (e.g. <c>docs/accuracy.md, accuracy table</c>).</summary>
    [JsonPropertyName("source")]
    public required string Source { get; init; }

    /// <summary>The command that measured them.</summary>
    [JsonPropertyName("command")]
    public required string Command { get; init; }

    /// <summary>Seed of the synthetic corpus whose held-out (<see cref="SyntheticRagCorpus.Eval"/>) split was measured.</summary>
    [JsonPropertyName("corpus_seed")]
    public required ulong CorpusSeed { get; init; }

    /// <summary>Held-out questions of each kind measured: the first ones of the split.</summary>
    [JsonPropertyName("questions_per_kind")]
    public required int QuestionsPerKind { get; init; }

    /// <summary>The measured rows.</summary>
    [JsonPropertyName("rows")]
    public required IReadOnlyList<AccuracyRecordRow> Rows { get; init; }

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    /// <summary>The record's path inside <paramref name="checkpointFolder"/>.</summary>
    public static string PathIn(string checkpointFolder) => System.IO.Path.Combine(checkpointFolder, FileName);

    /// <summary>Reads the record of a checkpoint folder; null when the folder has none.</summary>
    /// <exception cref="InvalidDataException">The file is not a valid record; the message names it.</exception>
    public static AccuracyRecord? Read(string checkpointFolder)
    {
        string path = PathIn(checkpointFolder);
        if (!File.Exists(path)) return null;
        AccuracyRecord? record;
        try
        {
            record = JsonSerializer.Deserialize<AccuracyRecord>(File.ReadAllText(path), Json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a valid accuracy record: {e.Message}", e);
        }
        if (record is null) throw new InvalidDataException($"{path} is not a valid accuracy record: it holds null.");
        if (record.QuestionsPerKind < 1) throw new InvalidDataException($"{path}: questions_per_kind must be at least 1 (was {record.QuestionsPerKind}).");
        if (record.Rows.Count == 0) throw new InvalidDataException($"{path}: rows is empty.");
        return record;
    }

    /// <summary>
    /// Writes the record into <paramref name="checkpointFolder"/>, replacing any earlier one in one step (a temporary file
    /// moved over it), so a reader never sees half a record.
    /// </summary>
    public void Write(string checkpointFolder)
    {
        string path = PathIn(checkpointFolder);
        string temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json) + "\n");
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>The KVLink row with <paramref name="linkTokens"/> link tokens, or null.</summary>
    public AccuracyRecordRow? KvLink(int linkTokens) => Rows.FirstOrDefault(r => !r.FullPrefill && r.LinkTokens == linkTokens);

    /// <summary>The full-prefill row (the upper bound), or null.</summary>
    [JsonIgnore]
    public AccuracyRecordRow? FullPrefill => Rows.FirstOrDefault(r => r.FullPrefill);
}
