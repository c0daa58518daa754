using System.Diagnostics;
using System.Globalization;
using System.Text;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;
using KVLink.Training;

namespace KVLink.Benchmarks;

/// <summary>
/// Issue #26's burst (--burst): eight requests arriving together on the demo model, the slowest caller-seen TTFT against
/// one request's alone, in one run. In process (the engine as the sample configures it: K = 5, --dtype, default auto) and
/// from outside (the ASP.NET sample as a child process, streaming HTTP clients). Rounds alternate a single request and a
/// burst of --users (one value, default 8) requests started at once, each asking its own evaluation question of the
/// synthetic corpus over its own documents (precomputed before the clock starts); a caller's TTFT runs from its call to
/// its first streamed text. In process every round runs three times, in rotating order: the engine as it is (steps as
/// groups side by side, a small bf16 model's rows padded to reused counts), groups with exact row counts (before
/// <see cref="RowBuckets"/>), and one forward over all threads with exact row counts (before <see cref="StepGroups"/>).
/// The in-process rows also list the scheduler's first steps of each burst and the step's forward alone
/// (<see cref="StepProbe"/>), which is the compute the burst cannot avoid.
/// </summary>
internal static class BurstBench
{
    // Warm-up: the .NET JIT keeps tiering up the request path (100-240 methods, 80-200 ms of compile time per round on
    // 2 cores) for the first ~16 rounds, on the cores the model needs; measured rounds start once it has settled. In
    // process: after at least MinWarmRounds, once three rounds in a row compiled nothing (at most MaxWarmRounds). The HTTP server
    // is another process whose JIT cannot be watched from here: it gets HttpWarmRounds.
    private const int MinWarmRounds = 4, MaxWarmRounds = 40, HttpWarmRounds = 32;

    public static async Task RunAsync(BenchOptions o)
    {
        int burst = o.Users.Length == 1 ? o.Users[0] : 8, rounds = Math.Max(o.LoadRounds, 8);
        var md = new StringBuilder();
        string machine = Machine.Describe();
        Console.WriteLine(machine);
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {o.CommandLine}`  ");
        md.AppendLine(CultureInfo.InvariantCulture, $"Machine: {machine}; load average before: {Machine.LoadAverage()}  ");
        md.AppendLine(CultureInfo.InvariantCulture,
            $"{rounds} measured rounds; each round: one request alone, then {burst} requests started together; greedy, at most {o.LoadTokens} new tokens; every request its own evaluation question and documents. ");
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Warm-up first: in process until a round's requests make the JIT compile nothing three rounds in a row (at least {MinWarmRounds} rounds), over HTTP {HttpWarmRounds} rounds.").AppendLine();
        var questions = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { TrainQuestionsPerKind = 0, EvalQuestionsPerKind = (rounds + MinWarmRounds) * (burst + 1) / 2 + 1 }).Eval;

        var (ways, bound, steps, warmed) = await InProcess(o, questions, burst, rounds);
        var http = await OverHttp(o, questions, burst, rounds);
        md.AppendLine("| where | single TTFT p50 (ms) | burst: first TTFT p50 (ms) | burst: slowest TTFT p50 / max (ms) | slowest / single p50 |");
        md.AppendLine("|---|---:|---:|---:|---:|");
        md.AppendLine(Row("engine, in process", ways[0]));
        md.AppendLine(Row("engine, in process, exact row counts (before RowBuckets; same rounds, rotating)", ways[1]));
        md.AppendLine(Row("engine, in process, one forward per step, exact row counts (before StepGroups; same rounds, rotating)", ways[2]));
        md.AppendLine(Row("ASP.NET sample over HTTP", http));
        md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"In process the JIT settled after {warmed} warm-up rounds.  ").AppendLine(bound);
        md.AppendLine().AppendLine("First steps of each measured in-process burst, the engine as it is (end of the step after the burst's start in ms: rows / duration in ms):  ");
        foreach (string s in steps) md.AppendLine(s + "  ");
        md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Load average after: {Machine.LoadAverage()}");
        File.WriteAllText(o.Output, md.ToString());
        Console.WriteLine(md.ToString());
    }

    /// <summary>Per round: the single request's TTFT and the burst's TTFTs.</summary>
    private sealed record Rounds(List<double> Single, List<double[]> Bursts);

    private static string Row(string where, Rounds r)
    {
        double single = Stats.Median(r.Single), slowest = Stats.Median(r.Bursts.Select(b => b.Max()));
        return string.Create(CultureInfo.InvariantCulture,
            $"| {where} | {single:F1} | {Stats.Median(r.Bursts.Select(b => b.Min())):F1} | {slowest:F1} / {r.Bursts.Max(b => b.Max()):F1} | **{slowest / single:F2}x** |");
    }

    /// <summary>The ways a round runs a step, the engine's own first: (groups side by side, padded row counts).</summary>
    private static readonly (bool Groups, bool Pad)[] Ways = [(true, true), (true, false), (false, false)];

    private static async Task<(Rounds[] Ways, string Bound, List<string> Steps, int Warmed)> InProcess(BenchOptions o, IReadOnlyList<SyntheticRagQuestion> questions, int burst, int rounds)
    {
        var engineOptions = new KvLinkOptions { LinkTokens = 5, DType = o.DType };
        await using var engine = await KVLink.Demo.DemoModel.LoadEngineAsync(options: engineOptions);
        var ids = await DocumentIds(questions, d => engine.PrecomputeAsync(new KvLinkDocument(d.Text, d.Title)));
        var options = new KvLinkGenerationOptions { MaxNewTokens = o.LoadTokens };
        var usage = new List<(int Prompt, int Computed)>();
        var gate = new Lock();
        async Task<double> Ask(int k)
        {
            k %= questions.Count; // warm-up rounds ask the questions again
            var clock = Stopwatch.StartNew();
            double ttft = double.NaN;
            await foreach (var u in engine.GenerateStreamingAsync(questions[k].Sample.Question, ids[k], options))
            {
                if (double.IsNaN(ttft) && u.Delta.Length > 0) ttft = clock.Elapsed.TotalMilliseconds;
                if (u.Result is { } result) lock (gate) usage.Add((result.Usage.PromptTokens, result.Usage.ComputedTokens));
            }
            return double.IsNaN(ttft) ? clock.Elapsed.TotalMilliseconds : ttft;
        }
        // Each round measures every way of running a step, in rotating order, so machine drift falls on all alike.
        var ways = Ways.Select(_ => new Rounds([], [])).ToArray();
        var grouped = ways[0];
        var steps = new List<string>();
        int next = 0, warmed = -1, quiet = 0;
        for (int r = 0; grouped.Bursts.Count < rounds; r++)
        {
            var (jitCount, jitTime) = (System.Runtime.JitInfo.GetCompiledMethodCount(), System.Runtime.JitInfo.GetCompilationTime());
            double slowest = 0;
            for (int w = 0; w < Ways.Length; w++)
            {
                int way = (w + r) % Ways.Length;
                (engineOptions.GroupSteps, engineOptions.PadStepRows) = Ways[way];
                double single = await Ask(next++);
                using var log = new StepLog();
                int first = next;
                next += burst;
                long start = Stopwatch.GetTimestamp();
                double[] ttfts = await Task.WhenAll(Enumerable.Range(first, burst).Select(k => Task.Run(() => Ask(k))));
                slowest = Math.Max(slowest, ttfts.Max());
                if (warmed < 0) continue;
                ways[way].Single.Add(single);
                ways[way].Bursts.Add(ttfts);
                if (way == 0)
                    steps.Add(string.Join(", ", log.Ends.Zip(log.Steps).Take(3).Select(e =>
                        string.Create(CultureInfo.InvariantCulture, $"{Stopwatch.GetElapsedTime(start, e.First).TotalMilliseconds:F1}: {e.Second.Rows} / {e.Second.Ms:F1}"))));
            }
            if (warmed < 0)
            {
                long compiled = System.Runtime.JitInfo.GetCompiledMethodCount() - jitCount;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"warm-up round {r}: the JIT compiled {compiled} methods in {(System.Runtime.JitInfo.GetCompilationTime() - jitTime).TotalMilliseconds:F0} ms; slowest TTFT {slowest:F1} ms"));
                quiet = compiled == 0 ? quiet + 1 : 0;
                if ((quiet >= 3 && r + 1 >= MinWarmRounds) || r + 1 == MaxWarmRounds) warmed = r + 1;
            }
        }
        (engineOptions.GroupSteps, engineOptions.PadStepRows) = Ways[0];
        Console.WriteLine(string.Join(Environment.NewLine, ways.Select((w, i) => $"in process, {Ways[i]}: " + Row("engine", w))));

        // The same step's forward alone, with the burst's median computed rows and cached context per request.
        int rows = (int)Stats.Median(usage.Select(u => (double)u.Computed)), context = (int)Stats.Median(usage.Select(u => (double)(u.Prompt - u.Computed)));
        // On the model thread, where the engine's own steps run (LibTorch's OpenMP team is per calling thread).
        var (one, all, groupedAll) = await engine.Parts.Context.Worker.Run(() => StepProbe.Run(engine.Model, burst, rows, context), CancellationToken.None);
        string bound = string.Create(CultureInfo.InvariantCulture,
            $"The step's forward alone (no engine around it, {engine.Model.DType}): one sequence of {rows} prompt rows over {context} cached positions {one:F1} ms; {burst} such sequences in one step {groupedAll:F1} ms as groups side by side (**{groupedAll / one:F2}x**), {all:F1} ms as one forward over all threads ({all / one:F2}x). " +
            $"So even with nothing else in the way, the slowest of the burst waits about {groupedAll - one:F1} ms longer than a request alone: at least {(Stats.Median(grouped.Single) + groupedAll - one) / Stats.Median(grouped.Single):F2}x the in-process single TTFT.");
        Console.WriteLine(bound);
        return (ways, bound, steps, warmed);
    }

    private static async Task<Rounds> OverHttp(BenchOptions o, IReadOnlyList<SyntheticRagQuestion> questions, int burst, int rounds)
    {
        await using var server = await SampleServer.StartAsync(new Dictionary<string, string>(), TimeSpan.FromMinutes(3));
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(10) };
        var ids = await DocumentIds(questions, d => HttpLoadBench.PostDocument(http, d.Text, d.Title, server));
        var measured = new Rounds([], []);
        int next = 0;
        for (int r = 0; r < HttpWarmRounds + rounds; r++)
        {
            int q = next % questions.Count; // warm-up rounds ask the questions again
            var single = await StreamingChat.SendAsync(http, questions[q].Sample.Question, ids[q], o.LoadTokens);
            next++;
            int first = next;
            next += burst;
            var answers = await Task.WhenAll(Enumerable.Range(first, burst).Select(k => k % questions.Count).Select(k => Task.Run(() => StreamingChat.SendAsync(http, questions[k].Sample.Question, ids[k], o.LoadTokens))));
            if (r < HttpWarmRounds) continue;
            measured.Single.Add(single.TtftMs);
            measured.Bursts.Add([.. answers.Select(a => a.TtftMs)]);
        }
        Console.WriteLine("over HTTP: " + Row("http", measured));
        return measured;
    }

    /// <summary>Each question's documents stored once per occurrence, in order, through <paramref name="store"/>; their ids per question.</summary>
    private static async Task<List<string[]>> DocumentIds(IReadOnlyList<SyntheticRagQuestion> questions, Func<KvLinkDocument, Task<string>> store)
    {
        var ids = new List<string[]>();
        foreach (var q in questions)
        {
            var docIds = new List<string>();
            foreach (var d in q.Sample.Documents) docIds.Add(await store(d));
            ids.Add([.. docIds]);
        }
        return ids;
    }
}
