using KVLink.Demo;
using KVLink.Training.Evaluation;

namespace KVLink.Train;

/// <summary>
/// Writes the shipped demo model's measured accuracy into its folder (<c>models/kvlink-demo/accuracy.json</c>, an
/// <see cref="AccuracyRecord"/>) whenever a command measures that model into docs/accuracy.md, so the record and the doc
/// always hold the same numbers. The quickstart prints it beside its own count; the KVLink.Demo package ships it with
/// the model, so it is there outside the repository too.
/// </summary>
internal static class ShippedAccuracy
{
    /// <summary>Writes the record when <paramref name="rows"/> measured <c>models/kvlink-demo</c> (other model folders are left alone).</summary>
    /// <param name="models">The models folder the command measured.</param>
    /// <param name="table">Which table of docs/accuracy.md shows the rows.</param>
    /// <param name="perKind">Held-out questions of each kind.</param>
    /// <param name="rows">The rows measured on <c>models/kvlink-demo</c>, as the table names them.</param>
    public static void Write(string models, string table, int perKind, IReadOnlyList<AccuracyRecordRow> rows)
    {
        if (rows.Count == 0) return;
        string folder = Path.Combine(models, DemoModel.FolderName);
        var record = new AccuracyRecord
        {
            Checkpoint = $"models/{DemoModel.FolderName}",
            Measured = DateOnly.FromDateTime(DateTime.UtcNow),
            Source = $"docs/accuracy.md, {table}",
            Command = "dotnet run -c Release --project samples/KVLink.Train -- " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            CorpusSeed = new DemoRecipe().Seed,
            QuestionsPerKind = perKind,
            Rows = rows,
        };
        record.Write(folder);
        DemoRecipe.Log($"accuracy record written to {AccuracyRecord.PathIn(folder)}");
    }

    /// <summary>A record row from a measured accuracy (percentages as the tables round them, one decimal).</summary>
    public static AccuracyRecordRow Row(string method, bool fullPrefill, int linkTokens, RagAccuracy accuracy) =>
        new(method, fullPrefill, linkTokens, Math.Round(accuracy.Percent("single-hop"), 1), Math.Round(accuracy.Percent("two-hop"), 1));
}
