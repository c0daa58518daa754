using System.Diagnostics;
using System.Globalization;
using System.Text;
using KVLink.Demo;
using KVLink.Core.Engine;
using KVLink.Training.Evaluation;
using KVLink.Training;

namespace KVLink.Train;

/// <summary>The accuracy table: every row measured in one run, through the engine (real generation, greedy).</summary>
internal static class Accuracy
{
    public sealed record Row(string Method, string Checkpoint, ContextMode Mode, int LinkTokens, bool Int8Decode = false);

    public static IReadOnlyList<Row> DemoRows(string models) =>
    [
        new("Full prefill, full-attention model (upper bound)", Path.Combine(models, DemoModel.FullAttentionFolderName), ContextMode.FullPrefill, 0),
        new("Naive reuse: independent caches, full-attention model", Path.Combine(models, DemoModel.FullAttentionFolderName), ContextMode.KvLink, 0),
        new("KVLink0", Path.Combine(models, DemoModel.FolderName), ContextMode.KvLink, 0),
        new("KVLink1", Path.Combine(models, DemoModel.FolderName), ContextMode.KvLink, 1),
        new("KVLink5", Path.Combine(models, DemoModel.FolderName), ContextMode.KvLink, 5),
        new("Full prefill, KVLink-trained model", Path.Combine(models, DemoModel.FolderName), ContextMode.FullPrefill, 0),
    ];

    /// <summary>The synthetic corpus' held-out questions, labelled single-hop / two-hop, with their gold answers.</summary>
    public static List<EvalQuestion> SyntheticEval(ulong seed, int perKind) =>
        [.. SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = seed, TrainQuestionsPerKind = 0, EvalQuestionsPerKind = perKind })
            .Eval.Select(q => new EvalQuestion(q.Sample.Documents, q.Sample.Question, [q.Gold], q.Kind == SyntheticQuestionKind.SingleHop ? "single-hop" : "two-hop"))];

    /// <summary>Evaluates every row; returns the markdown table, logs progress and hands each row's accuracy to <paramref name="onRow"/>.</summary>
    public static async Task<string> RunAsync(IReadOnlyList<Row> rows, IReadOnlyList<EvalQuestion> questions, int maxNewTokens, Action<string> log,
        Action<Row, RagAccuracy>? onRow = null)
    {
        var kinds = questions.Select(q => q.Kind ?? RagEvaluator.AllKind).Distinct().Order(StringComparer.Ordinal).ToList();
        var sb = new StringBuilder();
        sb.AppendLine($"| method | checkpoint | mode | link tokens | {string.Join(" | ", kinds.Select(k => $"{k} (n={questions.Count(q => (q.Kind ?? RagEvaluator.AllKind) == k)})"))} | overall |");
        sb.AppendLine($"|---|---|---|---|{string.Concat(kinds.Select(_ => "---|"))}---|");
        foreach (var row in rows)
        {
            await using var engine = await DemoModel.LoadEngineAsync(row.Checkpoint, new KvLinkOptions { DType = ComputeDType.Float32, LinkTokens = row.LinkTokens, Mode = row.Mode, DecodeWithInt8Weights = row.Int8Decode });
            int done = 0;
            var clock = Stopwatch.StartNew();
            var acc = await RagEvaluator.EvaluateAsync(engine, questions, row.Mode, row.LinkTokens, maxNewTokens, onAnswer: (_, _, _) =>
            {
                if (++done % 250 == 0) log($"  {row.Method}: {done}/{questions.Count} ({clock.Elapsed:mm\\:ss})");
            });
            string cells = string.Join(" | ", kinds.Select(k => acc.Percent(k).ToString("F1", CultureInfo.InvariantCulture)));
            string line = $"| {row.Method} | {RelativeName(row.Checkpoint)} | {(row.Mode == ContextMode.FullPrefill ? "full prefill" : "KVLink caches")} | {row.LinkTokens} | {cells} | {acc.Overall.ToString("F1", CultureInfo.InvariantCulture)} |";
            log(line);
            sb.AppendLine(line);
            onRow?.Invoke(row, acc);
        }
        return sb.ToString();
    }

    private static string RelativeName(string folder)
    {
        var full = Path.GetFullPath(folder);
        var root = Demo.RepoRoot();
        return full.StartsWith(root, StringComparison.Ordinal) ? Path.GetRelativePath(root, full) : full;
    }
}
