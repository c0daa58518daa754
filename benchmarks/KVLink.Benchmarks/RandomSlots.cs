using System.Diagnostics;
using System.Globalization;
using System.Text;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// <c>--random-slots</c>: the realistic case of issue #15. Every document is precomputed once (<c>PrecomputeAsync</c>,
/// default <c>PrecomputeSlots</c> = 1), then queried in random orders, so a document rarely sits in the slot it was
/// precomputed at. For each slot policy (a numbered header under <see cref="SlotPolicy.Exact"/> and
/// <see cref="SlotPolicy.Shared"/>; the slot-free header) it reports TTFT and <c>Usage.ComputedTokens</c> of every
/// query, the entries the store holds afterwards, and full prefill of the same prompts in the same run as the baseline.
/// Each policy sees the same orders. The suite's TTFT table, by contrast, warms every slot's cache first.
/// </summary>
internal static class RandomSlots
{
    public static async Task RunAsync(BenchOptions options)
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        set_num_threads(options.Threads);
        set_num_interop_threads(1);
        var clock = Stopwatch.StartNew();
        void Log(string s) => Console.WriteLine($"[{clock.Elapsed:hh\\:mm\\:ss}] {s}");
        var report = new StringBuilder();
        report.AppendLine($"Command: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {options.CommandLine}`  ");
        report.AppendLine($"Machine: {Machine.Describe()}; load average before: {Machine.LoadAverage()}  ");
        int k = options.LinkTokens.Max();
        string temp = Path.Combine(Path.GetTempPath(), $"kvlink-bench-slots-{Environment.ProcessId}");
        foreach (string name in options.Models)
        {
            using var m = BenchModel.Create(name, Path.Combine(temp, name));
            Log($"{m.Description}, built in {m.BuildTime.TotalSeconds:F1} s");
            foreach (int context in options.Contexts)
            {
                var docs = TtftBench.MakeDocuments(m, context, options.Documents);
                var rng = new Random(context);
                var orders = Enumerable.Range(0, options.Runs).Select(_ => Enumerable.Range(0, docs.Count).OrderBy(_ => rng.Next()).ToArray()).ToList();
                report.AppendLine();
                report.AppendLine($"**{m.Name}, {docs.Count} documents, {context} document tokens, K = {k}, {options.Runs} queries in random slot orders** " +
                    $"(each row: a fresh memory store; documents precomputed once, then one warm-up query of the first document alone)");
                report.AppendLine();
                report.AppendLine("| policy | header | precompute | TTFT per query | median TTFT | computed / prompt tokens per query | store entries after | stored bytes per document | median TTFT / full prefill |");
                report.AppendLine("|---|---|---|---|---|---|---|---|---|");
                var full = new List<double>();
                (string Name, string Header, PromptFormat Format, SlotPolicy Policy)[] rows =
                [
                    ("Exact", "numbered", m.Format, SlotPolicy.Exact),
                    ("Shared", "numbered", m.Format, SlotPolicy.Shared),
                    ("(any)", "slot-free", m.Format.WithSlotFreeHeader(), SlotPolicy.Shared),
                ];
                var lines = new List<string>();
                foreach (var row in rows)
                {
                    var store = new MemoryKvCacheStore();
                    await using var engine = new KvLinkEngine(m.Model, m.Tokenizer, new KvLinkOptions { LinkTokens = k, PromptFormat = row.Format, SlotPolicy = row.Policy }, store);
                    var started = clock.Elapsed;
                    var ids = new List<string>();
                    foreach (var d in docs) ids.Add(await engine.PrecomputeAsync(d));
                    double precomputeMs = (clock.Elapsed - started).TotalMilliseconds;
                    await engine.GenerateAsync(TtftBench.Question, [ids[0]], new KvLinkGenerationOptions { Mode = ContextMode.KvLink, LinkTokens = k, MaxNewTokens = 1 });
                    var ttft = new List<double>();
                    var computed = new List<string>();
                    foreach (var order in orders)
                    {
                        var slots = order.Select(i => ids[i]).ToList();
                        var res = await engine.GenerateAsync(TtftBench.Question, slots, new KvLinkGenerationOptions { Mode = ContextMode.KvLink, LinkTokens = k, MaxNewTokens = 1 });
                        ttft.Add(res.Timings.TimeToFirstToken.TotalMilliseconds);
                        computed.Add($"{res.Usage.ComputedTokens}");
                        if (row.Policy == SlotPolicy.Exact)
                        {
                            // The baseline, same prompt (numbered headers in their slots), same moment of the shared machine.
                            var f = await engine.GenerateAsync(TtftBench.Question, slots, new KvLinkGenerationOptions { Mode = ContextMode.FullPrefill, LinkTokens = k, MaxNewTokens = 1 });
                            full.Add(f.Timings.TimeToFirstToken.TotalMilliseconds);
                        }
                        Log($"  {m.Name} ctx {context} {row.Name}/{row.Header}: TTFT {ttft[^1]:F0} ms, computed {res.Usage.ComputedTokens}/{res.Usage.PromptTokens}" + (full.Count == ttft.Count && row.Policy == SlotPolicy.Exact ? $", full prefill {full[^1]:F0} ms" : ""));
                    }
                    var last = await engine.GenerateAsync(TtftBench.Question, orders[^1].Select(i => ids[i]).ToList(), new KvLinkGenerationOptions { Mode = ContextMode.KvLink, LinkTokens = k, MaxNewTokens = 1 });
                    lines.Add($"| {row.Name} | {row.Header} | {Stats.Ms(precomputeMs)} | {string.Join(", ", ttft.Select(t => Stats.Ms(t)))} | {Stats.Ms(Stats.Median(ttft))} | " +
                        $"{string.Join(", ", computed)} / {last.Usage.PromptTokens} | {store.Statistics.Entries} | {store.Statistics.Bytes / docs.Count:N0} | {{ratio:{Stats.Median(ttft).ToString(CultureInfo.InvariantCulture)}}} |");
                }
                double fullMedian = Stats.Median(full);
                foreach (var line in lines)
                {
                    int a = line.IndexOf("{ratio:", StringComparison.Ordinal), b = line.IndexOf('}', a);
                    double t = double.Parse(line[(a + 7)..b], CultureInfo.InvariantCulture);
                    report.AppendLine(line[..a] + (t / fullMedian).ToString("F3", CultureInfo.InvariantCulture) + line[(b + 1)..]);
                }
                report.AppendLine($"| full prefill (baseline, same prompts as Exact) | numbered | — | {string.Join(", ", full.Select(t => Stats.Ms(t)))} | {Stats.Ms(fullMedian)} | all | — | — | 1.00 |");
            }
        }
        report.AppendLine();
        report.AppendLine($"Load average after: {Machine.LoadAverage()}; run took {clock.Elapsed:mm\\:ss}.");
        Console.WriteLine();
        Console.WriteLine(report);
    }
}
