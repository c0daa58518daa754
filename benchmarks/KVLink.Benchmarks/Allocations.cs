using System.Globalization;
using System.Text;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Demo;
using KVLink.Training;

namespace KVLink.Benchmarks;

/// <summary>
/// --allocations (issue #26: "per-request allocations do not grow"): managed bytes allocated per request on the demo model
/// (K = 5), one request at a time. The documents of --requests synthetic evaluation questions are precomputed, both calls
/// are warmed up on other questions, then each question is asked through <c>GenerateAsync</c> and, again, through
/// <c>GenerateStreamingAsync</c> (read to the end). A request's bytes are the difference of
/// <c>GC.GetTotalAllocatedBytes(precise: true)</c> around it: every thread's allocations, the model thread's included, so
/// nothing else must run meanwhile (nothing does: one request at a time, no server). Allocation counts do not depend on
/// the machine's load, unlike times.
/// </summary>
internal static class Allocations
{
    private const int WarmupRequests = 8; // per call: enough for the request path's JIT to tier up

    private sealed record Row(string Call, List<long> Bytes, int Gen0, long Tokens);

    public static async Task RunAsync(BenchOptions o)
    {
        int n = o.Requests;
        var questions = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { TrainQuestionsPerKind = 0, EvalQuestionsPerKind = (n + WarmupRequests) / 2 + 1 }).Eval;
        await using var engine = await DemoModel.LoadEngineAsync(options: new KvLinkOptions { LinkTokens = 5 });
        var ids = new List<string[]>();
        foreach (var q in questions.Take(n + WarmupRequests))
            ids.Add([.. await Task.WhenAll(q.Sample.Documents.Select(d => engine.PrecomputeAsync(d)))]);
        var greedy = new KvLinkGenerationOptions { MaxNewTokens = o.LoadTokens, Temperature = 0 };

        async Task<long> Generate(int i) => (await engine.GenerateAsync(questions[i].Sample.Question, ids[i], greedy)).Usage.GeneratedTokens;
        async Task<long> Stream(int i)
        {
            long tokens = 0;
            await foreach (var update in engine.GenerateStreamingAsync(questions[i].Sample.Question, ids[i], greedy))
                if (update.Result is { } result) tokens = result.Usage.GeneratedTokens;
            return tokens;
        }

        // Warm-up on the questions after the measured ones, both calls.
        for (int i = n; i < n + WarmupRequests; i++)
        {
            await Generate(i);
            await Stream(i);
        }
        var rows = new List<Row> { await Measure("GenerateAsync", n, Generate), await Measure("GenerateStreamingAsync", n, Stream) };

        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {o.CommandLine}`  ");
        md.AppendLine(CultureInfo.InvariantCulture, $"Machine: {Machine.Describe()}; runtime {Environment.Version}  ");
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Demo model (K = 5, {engine.RuntimeInfo.ComputeDType}), {n} synthetic evaluation questions (documents precomputed), greedy, at most {o.LoadTokens} new tokens, one request at a time after {WarmupRequests} warm-up requests per call.").AppendLine();
        md.AppendLine("| call | requests | median bytes / request | mean bytes / request | min | max | gen0 collections | tokens generated |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in rows)
            md.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Call} | {r.Bytes.Count} | {Stats.Median(r.Bytes.Select(b => (double)b)):F0} | {r.Bytes.Average():F0} | {r.Bytes.Min()} | {r.Bytes.Max()} | {r.Gen0} | {r.Tokens} |");
        Console.Write(md.ToString());
        File.WriteAllText(o.Output, md.ToString());
        Console.WriteLine($"wrote {o.Output}");
    }

    /// <summary>Runs questions 0..n-1 one at a time through <paramref name="call"/>, recording each one's allocated bytes.</summary>
    private static async Task<Row> Measure(string name, int n, Func<int, Task<long>> call)
    {
        var bytes = new List<long>(n);
        long tokens = 0;
        int gen0 = GC.CollectionCount(0);
        for (int i = 0; i < n; i++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            tokens += await call(i);
            bytes.Add(GC.GetTotalAllocatedBytes(precise: true) - before);
        }
        return new Row(name, bytes, GC.CollectionCount(0) - gen0, tokens);
    }
}
