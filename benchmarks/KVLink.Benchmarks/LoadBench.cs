using System.Diagnostics;
using System.Globalization;
using System.Text;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// The serving benchmark (--load, issue #13): many users on one engine. Closed loop with C users, each sending its next
/// request when the last one answered; an open-loop Poisson arrival; the same engine limited to one running sequence as
/// the serial baseline; corpus indexing through the scheduler against per-document forwards and a full prefill; and the
/// attention kernel of a batched decode step, ragged (per sequence) against padded (one call). Caller-seen TTFT counts
/// everything from the call (queue wait included). Writes a markdown table to stdout and to --out.
/// </summary>
internal static class LoadBench
{
    private const string Question = "Who built the lighthouse and when did the ferry start?";

    public sealed record Level(string Name, int Users, int Requests, double WallS, List<double> TtftMs, List<double> ItlMs, long Tokens, int MaxRunning)
    {
        /// <summary>The scheduler's steps during the level (rows, ms), from its metrics.</summary>
        public (int Rows, double Ms)[] Steps { get; init; } = [];

        public double TokensPerS => Tokens / WallS;
        public double RequestsPerS => Requests / WallS;
        /// <summary>Decode rate of all users together: users / median inter-token gap (closed loops only).</summary>
        public double DecodeTokensPerS => Users * 1000 / Stats.Median(ItlMs);
    }

    public static async Task RunAsync(BenchOptions o)
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        set_num_threads(o.Threads);
        set_num_interop_threads(1);
        var md = new StringBuilder();
        void Log(string s) { Console.WriteLine(s); }
        string machine = Machine.Describe();
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {o.CommandLine}`  ");
        md.AppendLine(CultureInfo.InvariantCulture, $"Machine: {machine}; load average before: {Machine.LoadAverage()}  ");
        Log(machine);
        string temp = Path.Combine(Path.GetTempPath(), $"kvlink-load-{Environment.ProcessId}");
        try
        {
            foreach (string name in o.Models)
            {
                using var m = BenchModel.Create(name, Path.Combine(temp, name));
                Log($"{m.Name}: {m.Description} (built in {m.BuildTime.TotalSeconds:F1} s)");
                md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"### {m.Name}: {m.Description}").AppendLine();
                md.AppendLine(CultureInfo.InvariantCulture, $"{o.LoadDocuments} cached documents of {o.LoadContext / o.LoadDocuments} tokens, K = 5, {o.LoadTokens} new tokens per request (greedy, no stop token), {o.LoadRounds} requests per user (at least 4 per level); MaxStepTokens 512.").AppendLine();
                var levels = new List<Level>();
                int serialUsers = o.Users.Contains(8) ? 8 : o.Users.Max();
                Level? serial = null;
                string? indexing = null;
                // In the order given; the serial baseline right after its level and indexing after the second level,
                // so that a run cut short (a shared machine) still has the comparisons that matter most.
                foreach (int users in o.Users)
                {
                    levels.Add(await ClosedLoop(m, o, users, maxRunning: 16, Log));
                    Print(levels[^1], Log);
                    if (users == serialUsers)
                    {
                        serial = await ClosedLoop(m, o, serialUsers, maxRunning: 1, Log);
                        Print(serial, Log);
                    }
                    if (levels.Count == Math.Min(2, o.Users.Length) && o.IndexDocuments > 0) indexing = await Indexing(m, o, Log);
                }
                var batched = levels.First(l => l.Users == serialUsers);
                double rate = 0.5 * batched.RequestsPerS;
                var poisson = await OpenLoop(m, o, rate, Math.Max(8, serialUsers + serialUsers / 2), Log);
                Print(poisson, Log);
                // Last, so that no earlier row runs while the int8 copies exist: one user and the serial level, int8 decode weights.
                var int8Levels = new List<Level>();
                if (m.Name != "demo")
                    foreach (int users in new[] { 1, serialUsers }.Distinct())
                    {
                        int8Levels.Add(await ClosedLoop(m, o, users, maxRunning: 16, Log, int8: true));
                        Print(int8Levels[^1], Log);
                    }
                md.Append(Table([.. levels.OrderBy(l => l.Users), serial!, poisson, .. int8Levels]));
                var single = levels.FirstOrDefault(l => l.Users == 1);
                if (single is not null)
                {
                    md.AppendLine().AppendLine(CultureInfo.InvariantCulture,
                        $"At {batched.Users} users: aggregate decode {batched.DecodeTokensPerS:F2} tok/s = **{batched.DecodeTokensPerS / single.DecodeTokensPerS:F2}x** one user's ({single.DecodeTokensPerS:F2}); generated {batched.TokensPerS:F2} tok/s = **{batched.TokensPerS / single.TokensPerS:F2}x** one user's ({single.TokensPerS:F2} tok/s); serial baseline {serial!.TokensPerS:F2} tok/s (batched / serial = {batched.TokensPerS / serial.TokensPerS:F2}x). " +
                        $"p95 caller TTFT {Pct(batched.TtftMs, 95):F0} ms = **{Pct(batched.TtftMs, 95) / Stats.Median(single.TtftMs):F2}x** one user's median ({Stats.Median(single.TtftMs):F0} ms); serial baseline p95 {Pct(serial.TtftMs, 95):F0} ms. " +
                        $"Scheduler steps (`kvlink.scheduler.step.tokens` / `.duration`): one user {StepsLine(single)}; {batched.Users} users {StepsLine(batched)}.");
                }
                if (indexing is not null) md.AppendLine().Append(indexing);
                if (m.Name != "demo") md.AppendLine().Append(AttentionKernels(m, Log));
                if (m.Name != "demo" && !o.SkipLlamaCpp) md.AppendLine().Append(await LlamaCppBatched(m, o, temp, levels, Log));
                if (m.Name != "demo" && !o.SkipLlamaCpp && int8Levels.Count > 0) md.AppendLine().Append(await LlamaCppQ8Batched(m, o, temp, int8Levels, Log));
                File.WriteAllText(o.Output, md.ToString());
            }
        }
        finally
        {
            try { Directory.Delete(temp, recursive: true); } catch (IOException) { }
        }
        md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Load average after: {Machine.LoadAverage()}");
        File.WriteAllText(o.Output, md.ToString());
        Log($"wrote {o.Output}");
    }

    // One store for the whole run: every engine over the same model finds the corpus precomputed by the first.
    private static KVLink.Core.Caching.MemoryKvCacheStore? _store;
    private static BenchModel? _storeModel;

    private static KvLinkEngine Engine(BenchModel m, int maxRunning, int precomputeSlots, bool sharedStore = true, bool int8 = false)
    {
        if (_storeModel != m) (_store, _storeModel) = (new KVLink.Core.Caching.MemoryKvCacheStore(), m);
        return new(m.Model, m.Tokenizer, new KvLinkOptions { LinkTokens = 5, PromptFormat = m.Format, MaxRunningSequences = maxRunning, PrecomputeSlots = precomputeSlots, DecodeWithInt8Weights = int8 },
            sharedStore ? _store : new KVLink.Core.Caching.MemoryKvCacheStore());
    }

    private static KvLinkGenerationOptions Greedy(BenchOptions o) => new() { MaxNewTokens = o.LoadTokens, StopTokenIds = [], Mode = ContextMode.KvLink, LinkTokens = 5 };

    /// <summary>C users, each sending <see cref="BenchOptions.LoadRounds"/> requests back to back (its next when its last answered).</summary>
    private static async Task<Level> ClosedLoop(BenchModel m, BenchOptions o, int users, int maxRunning, Action<string> log, bool int8 = false)
    {
        await using var engine = Engine(m, maxRunning, o.LoadDocuments, int8: int8);
        var ids = await Corpus(engine, m, o);
        await engine.GenerateAsync(Question, ids, Greedy(o) with { MaxNewTokens = 2 }); // warm: prefix cache, kernels
        using var steps = new StepLog();
        var ttft = new List<double>();
        var itl = new List<double>();
        long tokens = 0;
        var gate = new Lock();
        var wall = Stopwatch.StartNew();
        int rounds = Math.Max(o.LoadRounds, (int)Math.Ceiling(4.0 / users)); // at least 4 requests per level
        await Task.WhenAll(Enumerable.Range(0, users).Select(u => Task.Run(async () =>
        {
            for (int r = 0; r < rounds; r++)
            {
                // Each user asks about its own order of the documents: different prompts, same cached entries.
                var docs = ids.Skip((u + r) % ids.Count).Concat(ids.Take((u + r) % ids.Count)).ToArray();
                var res = await engine.GenerateAsync(Question, docs, Greedy(o));
                lock (gate) Record(res, ttft, itl, ref tokens);
            }
        })));
        return new Level((maxRunning == 1 ? $"serial baseline, {users} users" : $"closed loop, {users} users") + (int8 ? ", int8 decode weights" : ""), users, users * rounds, wall.Elapsed.TotalSeconds, ttft, itl, tokens, maxRunning)
            { Steps = steps.Steps };
    }

    /// <summary>Requests arriving as a Poisson process of <paramref name="rate"/> per second, whatever the engine's state.</summary>
    private static async Task<Level> OpenLoop(BenchModel m, BenchOptions o, double rate, int count, Action<string> log)
    {
        await using var engine = Engine(m, 16, o.LoadDocuments);
        var ids = await Corpus(engine, m, o);
        await engine.GenerateAsync(Question, ids, Greedy(o) with { MaxNewTokens = 2 });
        var rng = new Random(13);
        var ttft = new List<double>();
        var itl = new List<double>();
        long tokens = 0;
        var gate = new Lock();
        var wall = Stopwatch.StartNew();
        var tasks = new List<Task>();
        double at = 0;
        for (int i = 0; i < count; i++)
        {
            at += -Math.Log(1 - rng.NextDouble()) / rate;
            var wait = TimeSpan.FromSeconds(at) - wall.Elapsed;
            if (wait > TimeSpan.Zero) await Task.Delay(wait);
            int shift = i % ids.Count;
            var docs = ids.Skip(shift).Concat(ids.Take(shift)).ToArray();
            tasks.Add(Task.Run(async () =>
            {
                var res = await engine.GenerateAsync(Question, docs, Greedy(o));
                lock (gate) Record(res, ttft, itl, ref tokens);
            }));
        }
        await Task.WhenAll(tasks);
        return new Level($"open loop, Poisson {rate:F3} req/s", 0, count, wall.Elapsed.TotalSeconds, ttft, itl, tokens, 16);
    }

    private static void Record(GenerationResult res, List<double> ttft, List<double> itl, ref long tokens)
    {
        ttft.Add(res.Timings.TimeToFirstToken.TotalMilliseconds);
        // Mean gap between this request's tokens after the first (the engine reports no per-token times).
        if (res.Usage.GeneratedTokens > 1) itl.Add((res.Timings.Total - res.Timings.TimeToFirstToken).TotalMilliseconds / (res.Usage.GeneratedTokens - 1));
        tokens += res.Usage.GeneratedTokens;
    }

    private static async Task<List<string>> Corpus(KvLinkEngine engine, BenchModel m, BenchOptions o)
    {
        var ids = new List<string>();
        foreach (var d in TtftBench.MakeDocuments(m, o.LoadContext, o.LoadDocuments)) ids.Add(await engine.PrecomputeAsync(d));
        return ids;
    }

    /// <summary>
    /// <paramref name="runs"/> full prefills of 1,000 tokens (the standard path: chunked causal forwards over an empty
    /// cache), their seconds added to <paramref name="seconds"/>.
    /// </summary>
    private static void FullPrefill(BenchModel m, List<double> seconds, Action<string> log, int runs = 2)
    {
        using var _ = no_grad();
        var tokens = Enumerable.Range(0, 1000).Select(i => 3 + (i * 7919) % (Math.Min(m.Config.VocabSize, 500) - 3)).ToArray();
        for (int run = 0; run < runs; run++)
        {
            using var scope = NewDisposeScope();
            using var cache = new AttentionCache(m.Config, tokens.Length, m.Model.DType);
            var c = Stopwatch.StartNew();
            CausalPrefill.Run(m.Model, cache, tokens).Dispose();
            seconds.Add(c.Elapsed.TotalSeconds);
        }
        if (runs > 1) log($"  full prefill 1k: {string.Join(", ", seconds.TakeLast(runs).Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))} s; load {Machine.LoadAverage()}");
    }

    /// <summary>
    /// --indexing: only the indexing comparison of --load (PrecomputeAllAsync of --index-docs documents of
    /// --index-doc-tokens, batched and one document per forward, beside full prefill at 1k), then the same corpus in
    /// groups paired with full prefills (<see cref="IndexingPaired"/>), for each of --models.
    /// </summary>
    public static async Task IndexingOnlyAsync(BenchOptions o)
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        set_num_threads(o.Threads);
        set_num_interop_threads(1);
        var md = new StringBuilder();
        string machine = Machine.Describe();
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {o.CommandLine}`  ");
        md.AppendLine(CultureInfo.InvariantCulture, $"Machine: {machine}; load average before: {Machine.LoadAverage()}  ");
        Console.WriteLine(machine);
        string temp = Path.Combine(Path.GetTempPath(), $"kvlink-indexing-{Environment.ProcessId}");
        try
        {
            foreach (string name in o.Models)
            {
                using var m = BenchModel.Create(name, Path.Combine(temp, name));
                Console.WriteLine($"{m.Name}: {m.Description}");
                md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"### {m.Name}: {m.Description}").AppendLine();
                md.Append(await Indexing(m, o, Console.WriteLine));
                File.WriteAllText(o.Output, md.ToString());
                md.AppendLine().Append(await IndexingPaired(m, o, Console.WriteLine));
                File.WriteAllText(o.Output, md.ToString());
            }
        }
        finally
        {
            try { Directory.Delete(temp, recursive: true); } catch (IOException) { }
        }
        md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"Load average after: {Machine.LoadAverage()}");
        File.WriteAllText(o.Output, md.ToString());
        Console.WriteLine($"wrote {o.Output}");
    }

    private static void Print(Level l, Action<string> log) =>
        log($"  {l.Name}: {l.Requests} requests in {l.WallS:F1} s; TTFT min {l.TtftMs.Min():F0} p50 {Stats.Median(l.TtftMs):F0} p95 {Pct(l.TtftMs, 95):F0} p99 {Pct(l.TtftMs, 99):F0} ms; " +
            $"ITL p50 {Stats.Median(l.ItlMs):F0} p95 {Pct(l.ItlMs, 95):F0} ms; {l.TokensPerS:F2} tok/s, {l.RequestsPerS:F3} req/s; {StepsLine(l)}; load {Machine.LoadAverage()}");

    /// <summary>The level's largest step (rows, ms) and the median step: where a burst of prompts goes.</summary>
    private static string StepsLine(Level l)
    {
        if (l.Steps.Length == 0) return "no steps recorded";
        var (rows, ms) = l.Steps.MaxBy(x => x.Rows);
        return $"{l.Steps.Length} steps, largest {rows} rows in {ms:F0} ms, median {Stats.Median([.. l.Steps.Select(x => x.Ms)]):F0} ms";
    }

    private static string Table(IEnumerable<Level> levels)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| run | max running | requests | caller TTFT p50 / p95 / p99 (ms) | inter-token p50 / p95 (ms) | aggregate decode tok/s (users / ITL p50) | generated tok/s (wall) | requests/s |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var l in levels)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {l.Name} | {l.MaxRunning} | {l.Requests} | {Stats.Median(l.TtftMs):F0} / {Pct(l.TtftMs, 95):F0} / {Pct(l.TtftMs, 99):F0} | {Stats.Median(l.ItlMs):F0} / {Pct(l.ItlMs, 95):F0} | {(l.Users > 0 ? l.DecodeTokensPerS.ToString("F2", CultureInfo.InvariantCulture) : "–")} | {l.TokensPerS:F2} | {l.RequestsPerS:F3} |");
        return sb.ToString();
    }

    /// <summary>Nearest-rank percentile.</summary>
    public static double Pct(List<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var v = values.OrderBy(x => x).ToArray();
        return v[Math.Clamp((int)Math.Ceiling(p / 100 * v.Length) - 1, 0, v.Length - 1)];
    }

    /// <summary>
    /// Indexing a corpus: PrecomputeAllAsync through the scheduler (documents batched into one forward per step) against
    /// the same engine limited to one sequence (one document per forward, as before), and a full prefill of 1k tokens.
    /// </summary>
    private static async Task<string> Indexing(BenchModel m, BenchOptions o, Action<string> log)
    {
        var docs = TtftBench.MakeDocuments(m, o.IndexDocuments * o.IndexDocumentTokens, o.IndexDocuments);
        var rates = new List<(string Name, double TokensPerS, double Seconds)>();
        // Full prefill is timed before and after the indexing runs, and its median taken: on a shared machine the
        // same forward varies by 15-25 % over minutes, and a long indexing run would otherwise be compared with one moment.
        var prefill = new List<double>();
        FullPrefill(m, prefill, log);
        foreach (var (label, maxRunning) in new[] { ("PrecomputeAllAsync, batched (MaxRunningSequences 16)", 16), ("PrecomputeAllAsync, one document per forward (MaxRunningSequences 1)", 1) })
        {
            await using var engine = Engine(m, maxRunning, 1, sharedStore: false); // nothing stored: every document is encoded
            await engine.PrecomputeAsync(new KvLinkDocument("warm up the kernels", "w")); // first-call costs out of the timing
            var r = await engine.PrecomputeAllAsync(docs, new KvLinkIndexingOptions { MaxDegreeOfParallelism = 16 });
            rates.Add((label, r.TokensComputed / r.Elapsed.TotalSeconds, r.Elapsed.TotalSeconds));
            log($"  {label}: {r.TokensComputed} tokens in {r.Elapsed.TotalSeconds:F1} s = {rates[^1].TokensPerS:F0} tok/s; load {Machine.LoadAverage()}");
            FullPrefill(m, prefill, log);
        }
        double median = Stats.Median(prefill);
        rates.Add(($"full prefill, 1,000 tokens (median of {prefill.Count}: 2 before, 2 after each indexing run; {string.Join(", ", prefill.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))} s)", 1000 / median, median));
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Indexing {o.IndexDocuments} documents of {o.IndexDocumentTokens} tokens:").AppendLine();
        sb.AppendLine("| run | seconds | tokens/s |").AppendLine("|---|---|---|");
        foreach (var (name, rate, s) in rates) sb.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {s:F1} | {rate:F0} |");
        return sb.ToString();
    }

    /// <summary>
    /// The same corpus indexed in groups of 10 documents (batched engine), each group right after one full prefill of
    /// 1,000 tokens: every indexing rate has a full-prefill rate measured within seconds of it, so the machine's drift
    /// over minutes cancels in the pair's ratio. Reports each pair and the median ratio.
    /// </summary>
    private static async Task<string> IndexingPaired(BenchModel m, BenchOptions o, Action<string> log)
    {
        var docs = TtftBench.MakeDocuments(m, o.IndexDocuments * o.IndexDocumentTokens, o.IndexDocuments);
        await using var engine = Engine(m, 16, 1, sharedStore: false);
        await engine.PrecomputeAsync(new KvLinkDocument("warm up the kernels", "w"));
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"The same {docs.Count} documents in groups of 10 (`PrecomputeAllAsync` per group, MaxRunningSequences 16), each group right after one full prefill of 1,000 tokens:").AppendLine();
        sb.AppendLine("| group | full prefill 1k (tok/s) | indexing (tok/s) | indexing / full prefill |").AppendLine("|---|---:|---:|---:|");
        var ratios = new List<double>();
        long tokens = 0;
        double indexSeconds = 0, prefillSeconds = 0;
        for (int g = 0; g * 10 < docs.Count; g++)
        {
            var prefill = new List<double>();
            FullPrefill(m, prefill, log, runs: 1);
            var r = await engine.PrecomputeAllAsync(docs.Skip(g * 10).Take(10).ToList(), new KvLinkIndexingOptions { MaxDegreeOfParallelism = 16 });
            double full = 1000 / prefill[0], index = r.TokensComputed / r.Elapsed.TotalSeconds;
            ratios.Add(index / full);
            (tokens, indexSeconds, prefillSeconds) = (tokens + r.TokensComputed, indexSeconds + r.Elapsed.TotalSeconds, prefillSeconds + prefill[0]);
            log($"  group {g}: full prefill {full:F0} tok/s, indexing {index:F0} tok/s ({index / full:F2}x); load {Machine.LoadAverage()}");
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {g + 1} | {full:F0} | {index:F0} | {index / full:F2}x |");
        }
        double overall = tokens / indexSeconds, fullOverall = 1000 * ratios.Count / prefillSeconds;
        sb.AppendLine().AppendLine(CultureInfo.InvariantCulture,
            $"Over all groups: indexing {tokens} tokens at {overall:F0} tok/s, full prefill {fullOverall:F0} tok/s ({overall / fullOverall:F2}x); median of the pairs' ratios **{Stats.Median(ratios):F2}x**, {ratios.Count(x => x >= 1)} of {ratios.Count} pairs at or above 1.");
        return sb.ToString();
    }

    /// <summary>
    /// llama.cpp batched decoding on a GGUF of the same weights: LLamaSharp's BatchedExecutor with 1 and 8 conversations
    /// (aggregate decode tokens/s), and beside it the same steps driven as raw llama_decode batches (a cross-check of the executor's overhead).
    /// </summary>
    private static async Task<string> LlamaCppBatched(BenchModel m, BenchOptions o, string temp, List<Level> levels, Action<string> log)
    {
        try
        {
            var type = GgufWriter.ParseType(o.GgufType ?? "f16");
            double one = 0, eight = 0, rawOne = 0, rawEight = 0;
            await WithGguf(m, o, temp, type, async (llama, prompt) =>
            {
                one = await LlamaBatchedExecutor.DecodeTokensPerSecondAsync(llama.Weights, llama.ModelPath, prompt, 1, o.LoadTokens, o.Threads);
                eight = await LlamaBatchedExecutor.DecodeTokensPerSecondAsync(llama.Weights, llama.ModelPath, prompt, 8, o.LoadTokens, o.Threads);
                log($"  llama.cpp ({type} GGUF) BatchedExecutor: 1 conversation {one:F2} tok/s, 8 conversations {eight:F2} tok/s ({eight / one:F2}x); load {Machine.LoadAverage()}");
                rawOne = llama.BatchedDecodeTokensPerSecond(prompt, 1, o.LoadTokens, o.Threads);
                rawEight = llama.BatchedDecodeTokensPerSecond(prompt, 8, o.LoadTokens, o.Threads);
                log($"  llama.cpp raw llama_decode batches: 1 stream {rawOne:F2} tok/s, 8 streams {rawEight:F2} tok/s ({rawEight / rawOne:F2}x)");
            });
            var ours8 = levels.FirstOrDefault(l => l.Users == 8);
            return $"llama.cpp batched decoding through LLamaSharp's `BatchedExecutor` ({type} GGUF of the same weights; N conversations each prompted with the same 64 tokens, then {o.LoadTokens} steps of one `Infer()` and one greedy sample per conversation): " +
                $"1 conversation {one:F2} tok/s, 8 conversations {eight:F2} tok/s aggregate ({eight / one:F2}x). The same steps as raw `llama_decode` batches: 1 stream {rawOne:F2}, 8 streams {rawEight:F2} tok/s" +
                (ours8 is null ? ".\n" : $". KVLink.Core's closed loop at 8 users: {ours8.DecodeTokensPerS:F2} tok/s aggregate decode (8 / inter-token p50), {ours8.TokensPerS:F2} generated tok/s over the wall clock (TTFT included).\n");
        }
        catch (Exception e)
        {
            log($"  llama.cpp unavailable: {e.GetType().Name}: {e.Message}");
            return $"llama.cpp batched decoding: not measured ({e.GetType().Name}: {e.Message}).\n";
        }
    }

    /// <summary>Writes a GGUF of <paramref name="type"/> for the model, runs <paramref name="measure"/> on llama.cpp with the 64-token prompt of these rows, deletes the file.</summary>
    private static async Task WithGguf(BenchModel m, BenchOptions o, string temp, GgufWriter.GgmlType type, Func<LlamaCppRunner, int[], Task> measure)
    {
        string gguf = Path.Combine(temp, $"{m.Name}-{type}.gguf");
        GgufWriter.Write(gguf, m.Model, m.Tokenizer, type);
        try
        {
            using var llama = new LlamaCppRunner(gguf, 1024, o.Threads);
            await measure(llama, [.. Enumerable.Range(0, 64).Select(i => 3 + (i * 31) % 200)]);
        }
        finally { File.Delete(gguf); }
    }

    /// <summary>
    /// llama.cpp's <c>BatchedExecutor</c> on a Q8_0 GGUF of the same weights, 1 and 8 conversations, beside our closed
    /// loop with int8 decode weights: int8 against int8, where the F16 row compares full precision with full precision.
    /// </summary>
    private static async Task<string> LlamaCppQ8Batched(BenchModel m, BenchOptions o, string temp, List<Level> int8Levels, Action<string> log)
    {
        try
        {
            double one = 0, eight = 0;
            await WithGguf(m, o, temp, GgufWriter.GgmlType.Q8_0, async (llama, prompt) =>
            {
                one = await LlamaBatchedExecutor.DecodeTokensPerSecondAsync(llama.Weights, llama.ModelPath, prompt, 1, o.LoadTokens, o.Threads);
                eight = await LlamaBatchedExecutor.DecodeTokensPerSecondAsync(llama.Weights, llama.ModelPath, prompt, 8, o.LoadTokens, o.Threads);
            });
            log($"  llama.cpp (Q8_0 GGUF) BatchedExecutor: 1 conversation {one:F2} tok/s, 8 conversations {eight:F2} tok/s; load {Machine.LoadAverage()}");
            var ours1 = int8Levels.First(l => l.Users == 1);
            var ours8 = int8Levels.Last();
            return $"Int8 against int8: llama.cpp's `BatchedExecutor` on a Q8_0 GGUF of the same weights (same steps as above): 1 conversation {one:F2} tok/s, {ours8.Users} conversations {eight:F2} tok/s aggregate. " +
                $"KVLink.Core with `DecodeWithInt8Weights`: 1 user {ours1.DecodeTokensPerS:F2} tok/s ({ours1.DecodeTokensPerS / one:F2}x llama.cpp's), {ours8.Users} users {ours8.DecodeTokensPerS:F2} tok/s aggregate decode ({ours8.DecodeTokensPerS / eight:F2}x).\n";
        }
        catch (Exception e)
        {
            log($"  llama.cpp Q8_0 unavailable: {e.GetType().Name}: {e.Message}");
            return $"llama.cpp Q8_0 batched decoding: not measured ({e.GetType().Name}: {e.Message}).\n";
        }
    }

    /// <summary>
    /// The attention of one batched decode step of 8 sequences with cache lengths 300..1000 (1B shape, one layer):
    /// per sequence against its own cache (ragged, what the scheduler does) against one padded call over [8, ...] with a padding mask.
    /// </summary>
    private static string AttentionKernels(BenchModel m, Action<string> log)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var c = m.Config;
        int g = c.NumAttentionHeads / c.NumKeyValueHeads, d = c.HeadDim, kv = c.NumKeyValueHeads;
        int[] lengths = [300, 400, 500, 600, 700, 800, 900, 1000];
        var dtype = m.Model.DType;
        var keys = lengths.Select(l => randn([1, kv, l, d]).to(dtype)).ToArray();
        var values = lengths.Select(l => randn([1, kv, l, d]).to(dtype)).ToArray();
        var queries = lengths.Select(_ => randn([1, kv, g, d]).to(dtype)).ToArray();
        int max = lengths.Max();
        double Time(Action a)
        {
            a();
            var times = new List<double>();
            for (int r = 0; r < 20; r++) { var sw = Stopwatch.StartNew(); a(); times.Add(sw.Elapsed.TotalMilliseconds); }
            return Stats.Median(times);
        }
        double ragged = Time(() =>
        {
            using var s = NewDisposeScope();
            for (int i = 0; i < lengths.Length; i++)
                nn.functional.scaled_dot_product_attention(queries[i], keys[i], values[i], ones([g, lengths[i]], ScalarType.Bool));
        });
        // Padded: the caches copied into one [8, kv, max, d] tensor each step (or kept there at max capacity), one call with a mask.
        var maskData = new bool[lengths.Length * g * max];
        for (int i = 0; i < lengths.Length; i++) for (int q = 0; q < g; q++) for (int s = 0; s < lengths[i]; s++) maskData[(i * g + q) * max + s] = true;
        var mask = tensor(maskData, [lengths.Length, 1, g, max]);
        var pk = zeros([lengths.Length, kv, max, d], dtype);
        var pv = zeros([lengths.Length, kv, max, d], dtype);
        var pq = cat(queries, 0);
        double padded = Time(() =>
        {
            using var s = NewDisposeScope();
            nn.functional.scaled_dot_product_attention(pq, pk, pv, mask);
        });
        double copy = Time(() =>
        {
            using var s = NewDisposeScope();
            for (int i = 0; i < lengths.Length; i++) { pk[i].narrow(1, 0, lengths[i]).copy_(keys[i][0]); pv[i].narrow(1, 0, lengths[i]).copy_(values[i][0]); }
        });
        log($"  attention of one decode step, 8 sequences, one layer: ragged {ragged:F3} ms, padded {padded:F3} ms (+{copy:F3} ms to gather the caches)");
        return $"Attention of one batched decode step (8 sequences, caches of 300..1,000 tokens, one layer of this model's shape, median of 20): " +
            $"ragged (per sequence, {lengths.Length} calls) {ragged:F3} ms; padded (one call with a padding mask) {padded:F3} ms, plus {copy:F3} ms to gather the caches into the padded tensor.\n";
    }
}
