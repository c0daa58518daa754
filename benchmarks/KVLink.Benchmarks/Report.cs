using System.Text;

namespace KVLink.Benchmarks;

internal sealed record LogitCheckResult(int Tokens, double MaxAbsDiff, double MaxAbsLogit, long ArgmaxAgree);
internal sealed record MicroResult(string Name, string Size, double MeanNs, double ErrorNs, long Bytes);

internal sealed class ModelReport(string name, string description, TimeSpan buildTime, long cacheBytesPerToken)
{
    public string Name { get; } = name;
    public string Description { get; } = description;
    public TimeSpan BuildTime { get; } = buildTime;
    public long CacheBytesPerToken { get; } = cacheBytesPerToken;
    public List<TtftCell> Cells { get; } = [];
    public List<(string Store, string Reason)> PendingStores { get; } = [];
    public LogitCheckResult? LogitCheck { get; set; }
    public string? LlamaError { get; set; }
    public string? GgufType { get; set; }
    public double DecodeTokensPerSecond { get; set; }
    public int DecodeContext { get; set; }
    public long PeakRss { get; set; }
    public long PeakRssAll { get; set; }
    public long RssBase { get; set; }
    /// <summary>Timed reads of one whole-context entry from the redis-server stores (issue #16).</summary>
    public List<StoreRead> Reads { get; } = [];
}

internal sealed class Report(BenchOptions options)
{
    public string Machine { get; set; } = "";
    public string LoadBefore { get; set; } = "";
    public string LoadAfter { get; set; } = "";
    public double CopyBandwidth { get; set; }
    public string? LlamaCppInfo { get; set; }
    public List<ModelReport> Models { get; } = [];
    public List<MicroResult>? Micro { get; set; }
    public List<string>? Kernels { get; set; }
    public TimeSpan Elapsed { get; set; }
    public bool Partial { get; set; }

    public string ToMarkdown()
    {
        var s = new StringBuilder();
        s.AppendLine("# Benchmarks");
        s.AppendLine();
        s.AppendLine("Written by `benchmarks/KVLink.Benchmarks` in one run; every ratio compares figures measured in that same run.");
        if (Partial) s.AppendLine("\n**Partial: the run was still going when this was written.**");
        s.AppendLine("Speed is never asserted by tests: this file is the record. Random weights (no download): timings are real, texts are noise.");
        s.AppendLine();
        s.AppendLine("## Machine and command");
        s.AppendLine();
        s.AppendLine($"- Machine: {Machine}");
        s.AppendLine($"- Threads: {options.Threads} (LibTorch intra-op and llama.cpp); load average before: `{LoadBefore}`, after: `{LoadAfter}` (the machine is shared; figures are medians)");
        s.AppendLine($"- Copy bandwidth (bf16 tensor copy of 512 MiB, median of 7): **{CopyBandwidth / 1e9:F1} GB/s**");
        if (KVLink.Benchmarks.Machine.DiskBandwidth > 0) s.AppendLine($"- Disk read bandwidth (256 MiB file evicted from the page cache, then read; median of 3): **{KVLink.Benchmarks.Machine.DiskBandwidth / 1e9:F2} GB/s** — the floor of the cold file store");
        if (LlamaCppInfo is not null) s.AppendLine($"- llama.cpp: LLamaSharp 0.30.0 + LLamaSharp.Backend.Cpu 0.30.0 (its avx512 build; on Debian 12 `ldd` resolves every dependency and it needs at most GLIBCXX_3.4.30, so it loads unpatched): `{LlamaCppInfo}`");
        s.AppendLine($"- This run: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {options.CommandLine}` ({Elapsed.TotalMinutes:F1} min)");
        s.AppendLine("- Full suite (median of 5 runs everywhere, after 1 warm-up): `dotnet run -c Release --project benchmarks/KVLink.Benchmarks` (all contexts 1k/2k/5k/10k, K = 0/1/5, both models, llama.cpp at every context, micro-benchmarks)");
        s.AppendLine("- Bounded run: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- --quick` (1k and 5k; KVLink cells 5 runs; the slow full-prefill/llama.cpp cells 1 run, llama.cpp at 1k only)");
        s.AppendLine($"- Per cell: {options.Warmup} warm-up, then {options.Runs} measured runs (full prefill: {Math.Min(options.FullRuns ?? options.Runs, options.Runs)}{(options.FullRunsUpTo > 0 ? $", or {options.Runs} up to {options.FullRunsUpTo} tokens" : "")}; llama.cpp: at most {options.LlamaRuns?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "as many"}{(options.FullWarmup ? "" : "; no warm-up for either")}); medians. " +
                     $"Contexts are document tokens only ({options.Documents} documents of equal length, byte-level tokenizer); the prompt adds the system turn, markers, link tokens and the question.");
        s.AppendLine();
        s.AppendLine("Definitions:");
        s.AppendLine("- **TTFT**: `GenerationResult.Timings.TimeToFirstToken` — from the call to `GenerateAsync` until the first token is chosen: store reads, placing the caches, re-rotation, the forward pass, sampling.");
        s.AppendLine("- **Full prefill**: the same documents and question with `Mode = FullPrefill` and K = 0 (the plain prompt, every token computed). **ratio** = KVLink TTFT / full-prefill TTFT, computed pair by pair (run i with run i), then the median.");
        s.AppendLine("- **Floor**: moving the retrieved caches' bytes (documents + shared prefix, keys and values) at the copy bandwidth above, plus one forward pass over the computed (segment-0) tokens alone against an already-filled cache, measured right after each KVLink run; TTFT/floor is taken pair by pair, then the median.");
        s.AppendLine("- **llama.cpp**: full prefill of the same token ids on the same weights (GGUF written by the benchmark), same thread count, fresh context, one `llama_decode` of the whole prompt (default micro-batch), to the last token's logits.");
        s.AppendLine();

        foreach (var m in Models)
        {
            s.AppendLine($"## {m.Description}");
            s.AppendLine();
            s.AppendLine($"Weights built in memory in {m.BuildTime.TotalSeconds:F1} s. Cache bytes per token: **{m.CacheBytesPerToken:N0} B (bf16)** in memory; serialized entries (`KvCacheFormat`, header and text included, at the largest context): **{m.Cells.Where(c => c.StoredBytesPerToken > 0).Select(c => c.StoredBytesPerToken).DefaultIfEmpty().Last():N0} B** per token as computed, **{m.Cells.Where(c => c.Int8BytesPerToken > 0).Select(c => c.Int8BytesPerToken).DefaultIfEmpty().Last():N0} B** with `Int8PerChannel`. Memory (process RSS, which also holds the runtime, LibTorch and earlier phases' leftovers): **{Stats.Bytes(m.RssBase)}** with the model loaded, peak **{Stats.Bytes(m.PeakRss)}** (+{Stats.Bytes(m.PeakRss - m.RssBase)}) while precomputing 10 documents ({m.DecodeContext} tokens) into the memory store and serving KVLink5 requests over them (peak of the whole phase incl. GGUF writing and llama.cpp's mapped weights: {Stats.Bytes(m.PeakRssAll)}). " +
                        $"Decode: **{m.DecodeTokensPerSecond:F1} tokens/s** (greedy, {options.DecodeTokens} tokens after a {m.DecodeContext}-token KVLink5 prefill).");
            s.AppendLine();
            if (m.LogitCheck is { } lc)
                s.AppendLine($"llama.cpp correctness (f32 GGUF, f32 KV cache, flash attention off — its CPU flash attention rounds to f16 — vs our f32 forward, {lc.Tokens} tokens, all positions): max |Δlogit| = **{lc.MaxAbsDiff:E2}** (max |logit| {lc.MaxAbsLogit:F2}); argmax agrees at {lc.ArgmaxAgree}/{lc.Tokens} positions.\n");
            if (m.LlamaError is not null) s.AppendLine($"llama.cpp: not measured — {m.LlamaError}\n");
            else if (m.GgufType is not null) s.AppendLine($"llama.cpp timed on a {m.GgufType} GGUF of the same bf16 weights.\n");

            s.AppendLine("### TTFT (medians)");
            s.AppendLine();
            var ks = options.LinkTokens;
            s.Append("| store | context | prompt tokens | full prefill | llama.cpp | ours/llama.cpp |");
            foreach (int k in ks) s.Append($" KVLink{k} | ratio{k} | below full{k} |");
            s.AppendLine();
            s.Append("|---|---:|---:|---:|---:|---:|");
            foreach (int _ in ks) s.Append("---:|---:|---:|");
            s.AppendLine();
            foreach (var c in m.Cells)
            {
                double full = Stats.Median(c.FullMs), ll = Stats.Median(c.LlamaMs);
                var pairs = c.FullMs.Zip(c.LlamaMs, (a, b) => a / b).ToList();
                s.Append($"| {c.Store} | {c.Context} | {c.PromptTokensFull} | {Stats.Ms(full)} | {Stats.Ms(ll)} | {(pairs.Count > 0 ? Stats.X(Stats.Median(pairs)) : "–")} |");
                foreach (int k in ks)
                {
                    var kc = c.K[k];
                    double ratio = Stats.Median(kc.RatioToFull);
                    s.Append($" {Stats.Ms(Stats.Median(kc.TtftMs))} | {ratio:F4} | {Stats.Pct(1 - ratio)} |");
                }
                s.AppendLine();
            }
            foreach (var (store, reason) in m.PendingStores) s.AppendLine($"| {store} | – | – | – | – | – |{string.Concat(ks.Select(_ => " – | – | – |"))} <!-- {reason} -->");
            s.AppendLine();
            if (m.PendingStores.Count > 0) s.AppendLine($"Pending rows: {string.Join("; ", m.PendingStores.Select(p => $"{p.Store} ({p.Reason})"))}.\n");

            s.AppendLine("### KVLink against its floor, and against llama.cpp");
            s.AppendLine();
            s.AppendLine("| store | context | K | computed tokens | cache bytes | TTFT | load | re-rotation | forward (in engine) | forward alone | bytes at bandwidth | floor | TTFT/floor | llama.cpp/TTFT |");
            s.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var c in m.Cells)
                foreach (int k in ks)
                {
                    var kc = c.K[k];
                    double ttft = Stats.Median(kc.TtftMs), floor = kc.FloorMs(c.Bandwidth), ll = Stats.Median(c.LlamaMs);
                    s.AppendLine($"| {c.Store} | {c.Context} | {k} | {kc.ComputedTokens} | {Stats.Bytes(kc.CacheBytes)} | {Stats.Ms(ttft)} | {Stats.Ms(Stats.Median(kc.LoadMs))} | {Stats.Ms(Stats.Median(kc.RerotateMs))} | {Stats.Ms(Stats.Median(kc.PrefillMs))} | " +
                                 $"{Stats.Ms(Stats.Median(kc.ForwardFloorMs))} | {Stats.Ms(kc.CacheBytes / c.Bandwidth * 1000)} | {Stats.Ms(floor)} | {Stats.X(Stats.Median(kc.RatioToFloor))} | {Stats.X(ll / ttft)} |");
                }
            s.AppendLine();
            if (m.Reads.Count > 0)
            {
                s.AppendLine("### Entry reads from redis-server on loopback (one entry as long as the context, bf16, GetAsync)");
                s.AppendLine();
                s.AppendLine("| store | tokens | entry bytes (serialized) | GetAsync (median) | runs | read bandwidth |");
                s.AppendLine("|---|---:|---:|---:|---:|---:|");
                foreach (var r in m.Reads)
                    s.AppendLine($"| {r.Store} | {r.Tokens} | {Stats.Bytes(r.Bytes)} | {Stats.Ms(r.MedianMs)} | {r.Ms.Count} | {r.BytesPerSecond / 1e9:F2} GB/s |");
                s.AppendLine();
            }
            foreach (int ctx in m.Cells.Select(c => c.Context).Distinct())
            {
                var single = m.Cells.FirstOrDefault(c => c.Context == ctx && c.Store == StoreUnderTest.RedisSingle);
                var cluster = m.Cells.FirstOrDefault(c => c.Context == ctx && c.Store == StoreUnderTest.RedisCluster);
                if (single is null || cluster is null) continue;
                var ratios = ks.Select(k => $"K={k} TTFT {Stats.X(Stats.Median(cluster.K[k].TtftMs) / Stats.Median(single.K[k].TtftMs))}, load {Stats.X(Stats.Median(cluster.K[k].LoadMs) / Stats.Median(single.K[k].LoadMs))}");
                var rs = m.Reads.FirstOrDefault(r => r.Store == StoreUnderTest.RedisSingle && r.Tokens == ctx);
                var rc = m.Reads.FirstOrDefault(r => r.Store == StoreUnderTest.RedisCluster && r.Tokens == ctx);
                string read = rs is not null && rc is not null ? $"; one {ctx}-token entry's GetAsync {Stats.X(rc.MedianMs / rs.MedianMs)}" : "";
                s.AppendLine($"Cluster / single-node at {ctx} tokens (medians; goal ≤ 1.3x): {string.Join("; ", ratios)}{read}.");
                s.AppendLine();
            }
        }

        s.AppendLine("## Goals on this machine");
        s.AppendLine();
        var one = Models.FirstOrDefault(m => m.Name == "1b");
        var five = one?.Cells.FirstOrDefault(c => c.Store == "memory" && c.Context == 5000);
        if (five is not null && five.K.TryGetValue(5, out var k5))
        {
            double ratio = Stats.Median(k5.RatioToFull), ttft = Stats.Median(k5.TtftMs), ll = Stats.Median(five.LlamaMs);
            var fullVsLlama = one!.Cells.Where(c => c.LlamaMs.Count > 0).Select(c => Stats.Median(c.FullMs.Zip(c.LlamaMs, (a, b) => a / b))).ToList();
            var overFloor = one.Cells.Where(c => c.Store == "memory").SelectMany(c => c.K.Values.Select(kc => Stats.Median(kc.RatioToFloor))).ToList();
            s.AppendLine("| goal (1B shape) | target | measured |");
            s.AppendLine("|---|---|---|");
            s.AppendLine($"| KVLink5 TTFT at 5k below full prefill | ≥ 97 % | {Stats.Pct(1 - ratio)} |");
            s.AppendLine($"| KVLink TTFT / floor (all memory-store cells) | ≤ 1.5x | {(overFloor.Count > 0 ? $"{Stats.X(overFloor.Min())} – {Stats.X(overFloor.Max())}" : "–")} |");
            s.AppendLine($"| our full prefill / llama.cpp's (same weights) | ≤ 1.5x | {(fullVsLlama.Count > 0 ? string.Join(", ", one.Cells.Where(c => c.LlamaMs.Count > 0).Select(c => $"{c.Context}: {Stats.X(Stats.Median(c.FullMs.Zip(c.LlamaMs, (a, b) => a / b)))}")) : "not measured")} |");
            s.AppendLine($"| KVLink5 TTFT at 5k vs llama.cpp full prefill | ≥ 20x faster | {(double.IsNaN(ll) ? "not measured" : Stats.X(ll / ttft))} |");
        }
        else s.AppendLine("The 1B shape at 5k tokens was not part of this run.");
        s.AppendLine();
        s.AppendLine("Notes on these figures:");
        s.AppendLine("- On the 1B shape KVLink's TTFT is almost all the forward pass over the computed tokens (link tokens, `<mem_end>`, question, generation header): placing the caches and re-rotating them costs tens of milliseconds even at 10k tokens (see the load and re-rotation columns). The ratio to full prefill is therefore set by how efficiently LibTorch's bf16 GEMMs run at ~40-90 rows versus thousands (kernel profile below), plus attention over all cached keys, which grows with the context.");
        s.AppendLine("- The byte-level tokenizer makes every character a token: the question and the chat headers cost about 40 computed tokens here, where the Llama-3 tokenizer would need about 15. KVLink is charged for them; full prefill pays for the system prompt (~220 byte tokens) the same way.");
        s.AppendLine("- The machine is shared with other jobs (load averages above); medians and same-run ratios limit but do not remove that noise. Full prefill and llama.cpp cells with one run are single measurements, not medians.");
        s.AppendLine("- llama.cpp is timed on its fastest weight type here (f16: `--llama-probe` measured f16 < bf16 < f32 for prefill; the LLamaSharp CPU build has AVX-512 but no AVX-512 BF16 kernels), with its default flash-attention setting and micro-batch.");
        s.AppendLine();

        if (Kernels is { Count: > 0 })
        {
            s.AppendLine("## Where the time goes: kernel profile (same run, 1B shapes, LibTorch CPU)");
            s.AppendLine();
            s.AppendLine("| kernel | size | median | rate |");
            s.AppendLine("|---|---|---:|---|");
            foreach (var row in Kernels) s.AppendLine(row);
            s.AppendLine();
        }
        if (Micro is { Count: > 0 })
        {
            s.AppendLine("## Micro-benchmarks (BenchmarkDotNet, in-process short job: 1 launch, 2 warm-ups, 5 iterations)");
            s.AppendLine();
            s.AppendLine("| benchmark | size | mean | ± error | bytes | throughput |");
            s.AppendLine("|---|---|---:|---:|---:|---:|");
            foreach (var r in Micro)
                s.AppendLine($"| {r.Name} | {r.Size} | {Stats.Ms(r.MeanNs / 1e6)} | {Stats.Ms(r.ErrorNs / 1e6)} | {Stats.Bytes(r.Bytes)} | {(r.Bytes > 0 ? $"{r.Bytes / (r.MeanNs / 1e9) / 1e9:F2} GB/s" : "–")} |");
            s.AppendLine();
            s.AppendLine("Store reads: the memory store returns the stored tensors (no copy); the file and distributed stores' reads are in the store rows of the TTFT and floor tables.");
            s.AppendLine();
        }
        return s.ToString();
    }
}
