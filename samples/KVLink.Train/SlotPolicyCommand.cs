using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KVLink.Demo;
using KVLink.Core.Engine;
using KVLink.Training.Evaluation;

namespace KVLink.Train;

/// <summary>
/// <c>slots</c>: accuracy of each way of serving a document's cache in any slot, on the same held-out questions
/// (5-10 documents each, in shuffled order, each precomputed once at slot 0 and then queried wherever it lands):
/// the numbered-header model under <see cref="SlotPolicy.Exact"/> and <see cref="SlotPolicy.Shared"/>, the
/// slot-free model, and full prefill of both as upper bounds. Written into docs/accuracy.md between markers.
/// </summary>
internal static class SlotPolicyCommand
{
    public const string Begin = "<!-- slot-policy-table:begin -->", End = "<!-- slot-policy-table:end -->";

    private sealed record Row(string Method, string Folder, string Header, ContextMode Mode, SlotPolicy Policy, string CachesPerDocument);

    public static async Task RunAsync(Options o)
    {
        string models = o.Get("models") ?? Path.Combine(Demo.RepoRoot(), "models");
        int perKind = o.Int("per-kind", 500);
        int maxNew = o.Int("max-new-tokens", 24);
        int k = o.Int("links", 5);
        string numbered = Path.Combine(models, SlotFreeCommand.NumberedFolderName), free = Path.Combine(models, DemoModel.FolderName);
        Row[] rows =
        [
            // KVLink rows first (Exact before the rows compared with it), so a run stopped early still has the comparison.
            new("Exact: a cache per document and slot", numbered, "numbered", ContextMode.KvLink, SlotPolicy.Exact, "one per slot used (up to 10)"),
            new("Shared: the slot-0 cache in every slot", numbered, "numbered", ContextMode.KvLink, SlotPolicy.Shared, "1"),
            new("Slot-free header (any policy)", free, "slot-free", ContextMode.KvLink, SlotPolicy.Shared, "1"),
            new("Full prefill (upper bound)", numbered, "numbered", ContextMode.FullPrefill, SlotPolicy.Exact, "—"),
            new("Full prefill (upper bound)", free, "slot-free", ContextMode.FullPrefill, SlotPolicy.Shared, "—"),
        ];
        var questions = Accuracy.SyntheticEval(new DemoRecipe().Seed, perKind);
        var kinds = questions.Select(q => q.Kind ?? RagEvaluator.AllKind).Distinct().Order(StringComparer.Ordinal).ToList();
        var sb = new StringBuilder();
        sb.AppendLine($"| method | checkpoint | header | mode | caches per document | {string.Join(" | ", kinds.Select(kind => $"{kind} (n={questions.Count(q => (q.Kind ?? RagEvaluator.AllKind) == kind)})"))} | overall | verdicts unlike Exact's | computed / prompt tokens per query |");
        sb.AppendLine($"|---|---|---|---|---|{string.Concat(kinds.Select(_ => "---|"))}---|---|---|");
        var shippedRows = new List<AccuracyRecordRow>();
        bool[]? exact = null; // each question's verdict under Exact: a paired comparison, finer than the two percentages
        var clock = Stopwatch.StartNew();
        foreach (var row in rows)
        {
            var options = new KvLinkOptions { DType = ComputeDType.Float32, LinkTokens = k, Mode = row.Mode, SlotPolicy = row.Policy };
            await using var engine = await DemoModel.LoadEngineAsync(row.Folder, options);
            var verdicts = new List<bool>();
            var acc = await RagEvaluator.EvaluateAsync(engine, questions, row.Mode, row.Mode == ContextMode.KvLink ? k : 0, maxNew, onAnswer: (_, _, ok) => verdicts.Add(ok));
            int n = questions.Count;
            if (row.Mode == ContextMode.KvLink && row.Policy == SlotPolicy.Exact && row.Header == "numbered") exact = [.. verdicts];
            string unlike = exact is null ? "—" : $"{verdicts.Where((ok, i) => ok != exact[i]).Count()} of {n}";
            string cells = string.Join(" | ", kinds.Select(kind => acc.Percent(kind).ToString("F1", CultureInfo.InvariantCulture)));
            string mode = row.Mode == ContextMode.FullPrefill ? "full prefill" : $"KVLink{k} caches";
            string line = $"| {row.Method} | models/{Path.GetFileName(row.Folder)} | {row.Header} | {mode} | {row.CachesPerDocument} | {cells} | " +
                $"{acc.Overall.ToString("F1", CultureInfo.InvariantCulture)} | {unlike} | {(double)acc.ComputedTokens / n:F1} / {(double)acc.PromptTokens / n:F1} |";
            DemoRecipe.Log(line + $" ({acc.Elapsed:mm\\:ss})");
            if (row.Folder == free) shippedRows.Add(ShippedAccuracy.Row(row.Method, row.Mode == ContextMode.FullPrefill, row.Mode == ContextMode.KvLink ? k : 0, acc));
            sb.AppendLine(line);
        }
        string report = $"""
            {sb}
            Measured {DateTime.UtcNow:yyyy-MM-dd} in one run of {clock.Elapsed:m\:ss} min on {Environment.ProcessorCount} CPU cores ({RuntimeInformation.OSDescription.Trim()}, {RuntimeInformation.ProcessArchitecture}; load average at start {LoadAverage()}), greedy decoding through `KvLinkEngine`, at most {maxNew} new tokens, Float32, {perKind} questions of each kind, K = {k}.
            """;
        string path = DemoRecipe.WriteMarkedSection("accuracy.md", "Accuracy", Begin, End, report);
        ShippedAccuracy.Write(models, "slot-policy table", perKind, shippedRows);
        Console.WriteLine(report);
        DemoRecipe.Log($"table written to {path}");
    }

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}
