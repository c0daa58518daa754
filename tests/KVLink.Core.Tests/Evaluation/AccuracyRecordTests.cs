using System.Globalization;
using KVLink.Core.Tests.Docs;
using KVLink.Demo;
using KVLink.Training.Evaluation;

namespace KVLink.Core.Tests.Evaluation;

/// <summary>
/// <c>accuracy.json</c>, the measured accuracy stored next to a checkpoint's weights: the shipped demo model's record holds
/// the very numbers docs/accuracy.md shows for it, travels with the model into a build's output, and a bad file is an
/// error naming it.
/// </summary>
public sealed class AccuracyRecordTests
{
    [Fact]
    public void The_shipped_record_matches_the_row_of_docs_accuracy_md_it_names()
    {
        var record = AccuracyRecord.Read(Path.Combine(MarkdownDocs.RepoRoot, "models", DemoModel.FolderName))
            ?? throw new FileNotFoundException("models/kvlink-demo/accuracy.json is missing.");
        Assert.Equal($"models/{DemoModel.FolderName}", record.Checkpoint);
        Assert.StartsWith("docs/accuracy.md, ", record.Source);
        Assert.NotNull(record.KvLink(5));   // what the quickstart (KVLink5) prints
        Assert.NotNull(record.FullPrefill);

        var doc = File.ReadAllLines(Path.Combine(MarkdownDocs.RepoRoot, "docs", "accuracy.md"));
        foreach (var row in record.Rows)
        {
            // The table row of this method on this checkpoint, and the header of its table.
            int at = Array.FindIndex(doc, l => Cells(l) is [var m, var c, ..] && m == row.Method && c == record.Checkpoint);
            Assert.True(at >= 0, $"docs/accuracy.md has no row '{row.Method}' on {record.Checkpoint}");
            int header = at;
            while (header > 0 && Cells(doc[header - 1]) is not null) header--;
            var names = Cells(doc[header])!;
            var cells = Cells(doc[at])!;
            string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
            Assert.Equal(F(row.SingleHopPercent), cells[names.IndexOf($"single-hop (n={record.QuestionsPerKind})")]);
            Assert.Equal(F(row.TwoHopPercent), cells[names.IndexOf($"two-hop (n={record.QuestionsPerKind})")]);
        }
    }

    [Fact]
    public void The_record_travels_with_the_demo_model_into_the_build_output()
    {
        string copied = DemoModel.FindFolder()!;
        Assert.StartsWith(AppContext.BaseDirectory, copied + Path.DirectorySeparatorChar);
        Assert.Equal(
            File.ReadAllText(Path.Combine(MarkdownDocs.RepoRoot, "models", DemoModel.FolderName, AccuracyRecord.FileName)),
            File.ReadAllText(AccuracyRecord.PathIn(copied)));
    }

    [Fact]
    public void Write_then_Read_gives_the_same_record_and_a_folder_without_one_reads_null()
    {
        using var dir = new TempFolder();
        Assert.Null(AccuracyRecord.Read(dir.Path));
        var record = new AccuracyRecord
        {
            Checkpoint = "models/x", Measured = new DateOnly(2026, 12, 7), Source = "docs/accuracy.md, accuracy table",
            Command = "dotnet run -- accuracy", CorpusSeed = ulong.MaxValue, QuestionsPerKind = 500,
            Rows = [new("KVLink5", false, 5, 91.2, 76.4), new("Full prefill", true, 0, 92.0, 77.0)],
        };
        record.Write(dir.Path);
        // The file holds the record's fields and nothing derived from them.
        using (var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(AccuracyRecord.PathIn(dir.Path))))
            Assert.Equal(["checkpoint", "measured", "source", "command", "corpus_seed", "questions_per_kind", "rows"], json.RootElement.EnumerateObject().Select(p => p.Name));
        var read = AccuracyRecord.Read(dir.Path)!;
        Assert.Equal(record with { Rows = [] }, read with { Rows = [] });
        Assert.Equal(record.Rows, read.Rows);
        Assert.Equal(76.4, read.KvLink(5)!.TwoHopPercent);
        Assert.Null(read.KvLink(1));
        Assert.Equal("Full prefill", read.FullPrefill!.Method);
        Assert.Equal([AccuracyRecord.FileName], Directory.GetFiles(dir.Path).Select(Path.GetFileName));   // no temporary file left
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("null")]
    [InlineData("""{"checkpoint":"m","measured":"2026-12-07","source":"s","command":"c","corpus_seed":1,"questions_per_kind":5}""")]   // rows missing
    [InlineData("""{"checkpoint":"m","measured":"2026-12-07","source":"s","command":"c","corpus_seed":1,"questions_per_kind":0,"rows":[{"method":"K","full_prefill":false,"link_tokens":5,"single_hop_percent":1,"two_hop_percent":2}]}""")]
    [InlineData("""{"checkpoint":"m","measured":"2026-12-07","source":"s","command":"c","corpus_seed":1,"questions_per_kind":5,"rows":[]}""")]
    public void A_malformed_record_is_an_error_naming_the_file(string text)
    {
        using var dir = new TempFolder();
        File.WriteAllText(AccuracyRecord.PathIn(dir.Path), text);
        var e = Assert.Throws<InvalidDataException>(() => AccuracyRecord.Read(dir.Path));
        Assert.Contains(AccuracyRecord.PathIn(dir.Path), e.Message);
    }

    // The cells of a Markdown table line, trimmed; null for any other line.
    private static List<string>? Cells(string line) =>
        line.StartsWith('|') ? [.. line.Trim().Trim('|').Split('|').Select(c => c.Trim())] : null;
}
