using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using KVLink.Core.Engine;
using KVLink.Training.Evaluation;

namespace KVLink.Train;

/// <summary>
/// <c>accuracy</c>: the demo table on the synthetic held-out split, written into docs/accuracy.md between markers.
/// <c>eval</c>: any checkpoint on any QA JSONL (synthetic, NQ- or HotpotQA-style), printed.
/// </summary>
internal static class AccuracyCommand
{
    public const string Begin = "<!-- accuracy-table:begin -->", End = "<!-- accuracy-table:end -->";

    public static async Task RunAsync(Options o, string models, string? trainingNote = null)
    {
        int perKind = o.Int("per-kind", 500);
        int maxNew = o.Int("max-new-tokens", 24);
        var questions = Accuracy.SyntheticEval(new DemoRecipe().Seed, perKind);
        var clock = Stopwatch.StartNew();
        string shipped = Path.GetFullPath(Path.Combine(models, KVLink.Demo.DemoModel.FolderName));
        var shippedRows = new List<AccuracyRecordRow>();
        string table = await Accuracy.RunAsync(Accuracy.DemoRows(models), questions, maxNew, DemoRecipe.Log, (row, acc) =>
        {
            if (Path.GetFullPath(row.Checkpoint) == shipped)
                shippedRows.Add(ShippedAccuracy.Row(row.Method, row.Mode == ContextMode.FullPrefill, row.LinkTokens, acc));
        });
        string report = $"""
            {table}
            Measured {DateTime.UtcNow:yyyy-MM-dd} in one run of {clock.Elapsed:m\:ss} min on {Environment.ProcessorCount} CPU cores ({RuntimeInformation.OSDescription.Trim()}, {RuntimeInformation.ProcessArchitecture}), greedy decoding through `KvLinkEngine`, at most {maxNew} new tokens, Float32, {perKind} questions of each kind.
            {(trainingNote is null ? "" : "\n" + trainingNote + "\n")}
            """;
        string path = DemoRecipe.WriteMarkedSection("accuracy.md", "Accuracy", Begin, End, report);
        ShippedAccuracy.Write(models, "accuracy table", perKind, shippedRows);
        Console.WriteLine(report);
        DemoRecipe.Log($"table written to {path}");
    }

    /// <summary>
    /// <c>accuracy-int8</c>: the KVLink-trained demo model decoding with full-precision and with int8 weights
    /// (KvLinkOptions.DecodeWithInt8Weights) on the synthetic held-out split, printed (issue #18).
    /// </summary>
    public static async Task Int8Async(Options o, string models)
    {
        int perKind = o.Int("per-kind", 100);
        int maxNew = o.Int("max-new-tokens", 24);
        var questions = Accuracy.SyntheticEval(new DemoRecipe().Seed, perKind);
        string demo = Path.Combine(models, KVLink.Demo.DemoModel.FolderName);
        Accuracy.Row[] rows =
        [
            new("KVLink5, f32 weights", demo, ContextMode.KvLink, 5),
            new("KVLink5, int8 decode weights", demo, ContextMode.KvLink, 5, Int8Decode: true),
            new("Full prefill, f32 weights", demo, ContextMode.FullPrefill, 0),
            new("Full prefill, int8 decode weights", demo, ContextMode.FullPrefill, 0, Int8Decode: true),
        ];
        var clock = Stopwatch.StartNew();
        Console.WriteLine(await Accuracy.RunAsync(rows, questions, maxNew, DemoRecipe.Log));
        Console.WriteLine($"{perKind} questions of each kind, greedy, at most {maxNew} new tokens, Float32 compute, {clock.Elapsed.TotalMinutes:F1} min");
    }

    /// <summary>Any checkpoint on any QA JSONL: full prefill and KVLink with each requested K.</summary>
    public static async Task EvalAsync(Options o)
    {
        string model = o.Require("model");
        var questions = EvalJsonl.Read(o.Require("data"));
        int limit = o.Int("limit", questions.Count);
        questions = questions.Take(limit).ToList();
        int[] links = o.Ints("links") ?? [0, 1, 5];
        var rows = new List<Accuracy.Row> { new("Full prefill", model, ContextMode.FullPrefill, 0) };
        rows.AddRange(links.Select(k => new Accuracy.Row($"KVLink{k}", model, ContextMode.KvLink, k)));
        Console.WriteLine(await Accuracy.RunAsync(rows, questions, o.Int("max-new-tokens", 32), DemoRecipe.Log));
    }
}
