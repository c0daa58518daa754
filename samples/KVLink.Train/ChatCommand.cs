using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;
using KVLink.Demo;
using KVLink.Training;
using KVLink.Training.Evaluation;
using Microsoft.Extensions.AI;

namespace KVLink.Train;

/// <summary>
/// <c>chat</c>: conversations on the demo model, into docs/accuracy.md between markers. (1) Where the caller's system content
/// goes: none, appended after the trained system text, or in place of it, on held-out single questions. (2) Five-turn
/// conversations (a question and its follow-ups about the same documents, the model's own answers fed back as history)
/// with the kept session cache vs recomputing the whole conversation each turn: per-turn accuracy, identical answers,
/// and TTFT of turn 1 vs turn 5.
/// </summary>
internal static class ChatCommand
{
    public const string Begin = "<!-- chat-table:begin -->", End = "<!-- chat-table:end -->";
    private const string CallerSystem = "Reply with one sentence.";

    public static async Task RunAsync(Options o)
    {
        string folder = o.Get("model") ?? Path.Combine(Demo.RepoRoot(), "models", DemoModel.FolderName);
        int perKind = o.Int("per-kind", 100), conversations = o.Int("conversations", 60), maxNew = o.Int("max-new-tokens", 24);
        var clock = Stopwatch.StartNew();
        var report = new StringBuilder();
        report.AppendLine(await SystemPlacementAsync(folder, perKind, maxNew));
        report.AppendLine(await ConversationsAsync(folder, conversations, maxNew));
        report.AppendLine($"Measured {DateTime.UtcNow:yyyy-MM-dd} in one run of {clock.Elapsed:m\\:ss} min on {Environment.ProcessorCount} CPU cores " +
            $"({RuntimeInformation.OSDescription.Trim()}, {RuntimeInformation.ProcessArchitecture}), `{Path.GetFileName(folder)}` in Float32, KVLink5, greedy, " +
            $"at most {maxNew} new tokens; load average before the run: {LoadAverage()}. Command: `dotnet run -c Release --project samples/KVLink.Train -- chat`.");
        string path = DemoRecipe.WriteMarkedSection("accuracy.md", "Conversations", Begin, End, report.ToString());
        Console.WriteLine(report);
        DemoRecipe.Log($"written to {path}");
    }

    private static Task<KvLinkEngine> Load(string folder, long sessionBytes, PromptFormat? format = null) =>
        KvLinkEngine.LoadAsync(folder, new KvLinkOptions { DType = ComputeDType.Float32, LinkTokens = 5, SessionCacheBytes = sessionBytes, PromptFormat = format, PrecomputeSlots = 10 });

    /// <summary>Held-out single questions with the caller's system content placed three ways.</summary>
    private static async Task<string> SystemPlacementAsync(string folder, int perKind, int maxNew)
    {
        var questions = Accuracy.SyntheticEval(new DemoRecipe().Seed, perKind);
        await using var trained = await Load(folder, 0);
        var replaceFormat = KvLinkLlama3Format.FromTokenizer(trained.Tokenizer, CallerSystem);
        await using var replaced = await Load(folder, 0, replaceFormat);
        var options = new KvLinkGenerationOptions { MaxNewTokens = maxNew };
        var rows = new (string Name, Func<EvalQuestion, IReadOnlyList<string>, Task<GenerationResult>> Ask, KvLinkEngine Engine)[]
        {
            ("no caller system content (trained text only)", (q, ids) => trained.ChatAsync([new(ChatRole.User, q.Question)], ids, options), trained),
            ($"appended: trained text + \"{CallerSystem}\" (the engine's choice)", (q, ids) => trained.ChatAsync([new(ChatRole.System, CallerSystem), new(ChatRole.User, q.Question)], ids, options), trained),
            ($"replaced: \"{CallerSystem}\" only", (q, ids) => replaced.ChatAsync([new(ChatRole.User, q.Question)], ids, options), replaced),
        };
        var sb = new StringBuilder();
        sb.AppendLine($"| caller system message | single-hop (n={perKind}) | two-hop (n={perKind}) | overall |");
        sb.AppendLine("|---|---|---|---|");
        foreach (var (name, ask, engine) in rows)
        {
            int[] correct = new int[2];
            foreach (var q in questions)
            {
                var ids = new List<string>();
                foreach (var d in q.Documents) ids.Add(await engine.PrecomputeAsync(d));
                var r = await ask(q, ids);
                if (AnswerMetric.IsCorrect(r.Text, q.Answers)) correct[q.Kind == "single-hop" ? 0 : 1]++;
            }
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {Pct(correct[0], perKind)} | {Pct(correct[1], perKind)} | {Pct(correct[0] + correct[1], 2 * perKind)} |");
            DemoRecipe.Log($"system placement: {name}: {correct[0]}/{perKind}, {correct[1]}/{perKind}");
        }
        return sb.ToString();
    }

    /// <summary>Five-turn conversations with and without the kept session cache.</summary>
    private static async Task<string> ConversationsAsync(string folder, int count, int maxNew)
    {
        // Held out: a seed the demo models were not trained on; the generator's multi-turn samples (question + follow-ups).
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = new DemoRecipe().Seed + 7_777, TrainQuestionsPerKind = count, EvalQuestionsPerKind = 0, MaxFollowUps = 4 });
        var samples = corpus.Train.Where(q => (q.Sample.FollowUps?.Count ?? 0) >= 4).Take(count).ToList();
        await using var reuse = await Load(folder, 256L << 20);
        await using var recompute = await Load(folder, 0);
        const int turns = 5;
        int[] correctReuse = new int[turns], correctRecompute = new int[turns];
        int identical = 0, total = 0;
        var ttft = new[] { new List<double>[turns], new List<double>[turns] };
        var cached = new[] { new List<double>[turns], new List<double>[turns] };
        for (int e = 0; e < 2; e++)
            for (int t = 0; t < turns; t++) { ttft[e][t] = []; cached[e][t] = []; }
        var options = new KvLinkGenerationOptions { MaxNewTokens = maxNew };
        foreach (var sample in samples)
        {
            var qa = new List<(string Q, string A)> { (sample.Sample.Question, sample.Sample.Answer) };
            qa.AddRange(sample.Sample.FollowUps!.Take(turns - 1).Select(f => (f.Question, f.Answer)));
            var ids = new List<string>();
            foreach (var d in sample.Sample.Documents) { ids.Add(await reuse.PrecomputeAsync(d)); await recompute.PrecomputeAsync(d); }
            var history = new[] { new List<ChatMessage>(), new List<ChatMessage>() };
            for (int t = 0; t < turns; t++)
            {
                var results = new GenerationResult[2];
                for (int e = 0; e < 2; e++)
                {
                    history[e].Add(new ChatMessage(ChatRole.User, qa[t].Q));
                    results[e] = await (e == 0 ? reuse : recompute).ChatAsync(history[e], ids, options);
                    history[e].Add(new ChatMessage(ChatRole.Assistant, results[e].Text));
                    ttft[e][t].Add(results[e].Timings.TimeToFirstToken.TotalMilliseconds);
                    cached[e][t].Add(results[e].Usage.CachedTokens);
                }
                total++;
                if (results[0].TokenIds.SequenceEqual(results[1].TokenIds)) identical++;
                // The model is trained to answer with the reference sentence; a turn is correct when it says exactly that.
                if (AnswerMetric.Normalize(results[0].Text) == AnswerMetric.Normalize(qa[t].A)) correctReuse[t]++;
                if (AnswerMetric.Normalize(results[1].Text) == AnswerMetric.Normalize(qa[t].A)) correctRecompute[t]++;
            }
        }
        int n = samples.Count;
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Five-turn conversations (n={n}; a held-out question, then 4 of its follow-ups about the same documents, each answer fed back as history):");
        sb.AppendLine();
        sb.AppendLine("| | turn 1 | turn 2 | turn 3 | turn 4 | turn 5 |");
        sb.AppendLine("|---|---|---|---|---|---|");
        sb.AppendLine("| exact answer, session reuse (%) | " + string.Join(" | ", correctReuse.Select(c => Pct(c, n))) + " |");
        sb.AppendLine("| exact answer, full recompute (%) | " + string.Join(" | ", correctRecompute.Select(c => Pct(c, n))) + " |");
        sb.AppendLine("| median TTFT, session reuse (ms) | " + string.Join(" | ", ttft[0].Select(Median)) + " |");
        sb.AppendLine("| median TTFT, full recompute (ms) | " + string.Join(" | ", ttft[1].Select(Median)) + " |");
        sb.AppendLine("| median cached prompt tokens, session reuse | " + string.Join(" | ", cached[0].Select(Median)) + " |");
        sb.AppendLine("| median cached prompt tokens, full recompute | " + string.Join(" | ", cached[1].Select(Median)) + " |");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Identical generated tokens with and without the session cache: {identical} of {total} turns. " +
            $"TTFT turn 5 / turn 1 (medians): {Ratio(ttft[0])} with session reuse, {Ratio(ttft[1])} recomputing.");
        return sb.ToString();
    }

    private static string Ratio(List<double>[] t) => (Med(t[^1]) / Med(t[0])).ToString("0.00", CultureInfo.InvariantCulture) + "x";
    private static double Med(List<double> xs) { var s = xs.Order().ToList(); return s.Count == 0 ? double.NaN : s[s.Count / 2]; }
    private static string Median(List<double> xs) => Med(xs).ToString("0.#", CultureInfo.InvariantCulture);
    private static string Pct(int c, int n) => (n == 0 ? 0 : 100.0 * c / n).ToString("0.0", CultureInfo.InvariantCulture);
    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";
}
