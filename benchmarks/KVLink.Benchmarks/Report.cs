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
    /// <summary>The model's compute dtype in this run.</summary>
    public string DType { get; init; } = "BFloat16";
    /// <summary>Bytes of the bf16 copies decoding rows read (float32 chosen by Auto), 0 when none.</summary>
    public long Bf16CopyBytes { get; init; }
    public double DecodeTokensPerSecond { get; set; }
    /// <summary>Physical floor of one decoded token at the decode context, ms.</summary>
    public double DecodeFloorMs { get; set; } = double.NaN;
    /// <summary>Decode with int8 weights (null: not measured).</summary>
    public double? Int8DecodeTokensPerSecond { get; set; }
    public double Int8DecodeFloorMs { get; set; } = double.NaN;
    public string? Int8Deviation { get; set; }
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
    /// <summary>The CPU tier, LibTorch's capability and the compute dtype chosen (with why), for the header.</summary>
    public string Tier { get; set; } = "";
    /// <summary>The dtype of the GEMM-rate table and of the floors' compute rate.</summary>
    public string GemmDType { get; set; } = "bf16";
    public string LoadBefore { get; set; } = "";
    public string LoadAfter { get; set; } = "";
    public double CopyBandwidth { get; set; }
    public double ReadBandwidth { get; set; }
    public List<string>? Gemm { get; set; }
    public double GemmBest { get; set; }
    public List<string>? Attention { get; set; }
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
        if (Tier.Length > 0) s.AppendLine($"- {Tier}");
        s.AppendLine($"- Threads: {options.Threads} (LibTorch intra-op and llama.cpp); load average before: `{LoadBefore}`, after: `{LoadAfter}` (the machine is shared; figures are medians)");
        s.AppendLine($"- Copy bandwidth (bf16 tensor copy of 512 MiB, median of 7): **{CopyBandwidth / 1e9:F1} GB/s**; read bandwidth ({options.Threads} threads summing 512 MiB with TensorPrimitives.Sum, median of 7): **{ReadBandwidth / 1e9:F1} GB/s**; best {GemmDType} GEMM rate of this run (table below): **{GemmBest / 1e9:F0} GFLOP/s**");
        if (KVLink.Benchmarks.Machine.DiskBandwidth > 0) s.AppendLine($"- Disk read bandwidth (256 MiB file evicted from the page cache, then read; median of 3): **{KVLink.Benchmarks.Machine.DiskBandwidth / 1e9:F2} GB/s** — the floor of the cold file store");
        if (LlamaCppInfo is not null) s.AppendLine($"- llama.cpp: LLamaSharp 0.30.0 + LLamaSharp.Backend.Cpu 0.30.0 ({(LlamaCppRunner.Build is { } b ? $"its {b} build, chosen by --llama-build" : "the build LLamaSharp picks by CPUID")}; on Debian 12 `ldd` resolves every dependency and it needs at most GLIBCXX_3.4.30, so it loads unpatched): `{LlamaCppInfo}`");
        s.AppendLine($"- This run: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {options.CommandLine}` ({Elapsed.TotalMinutes:F1} min)");
        s.AppendLine("- Full suite (median of 5 runs everywhere, after 1 warm-up): `dotnet run -c Release --project benchmarks/KVLink.Benchmarks` (all contexts 1k/2k/5k/10k, K = 0/1/5, both models, llama.cpp at every context, micro-benchmarks)");
        s.AppendLine("- Bounded run: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- --quick` (1k and 5k; KVLink cells 5 runs; the slow full-prefill/llama.cpp cells 1 run, llama.cpp at 1k only)");
        s.AppendLine($"- Per cell: {options.Warmup} warm-up, then {options.Runs} measured runs (full prefill: {Math.Min(options.FullRuns ?? options.Runs, options.Runs)}{(options.FullRunsUpTo > 0 ? $", or {options.Runs} up to {options.FullRunsUpTo} tokens" : "")}; llama.cpp: at most {options.LlamaRuns?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "as many"}{(options.FullWarmup ? "" : "; no warm-up for either")}); medians. " +
                     $"Contexts are document tokens only ({options.Documents} documents of equal length; the 1B shape uses the Llama-3-sized tokenizer, `1b-bytes` and the small model the byte-level one); the prompt adds the system turn, markers, link tokens and the question.");
        s.AppendLine();
        s.AppendLine("Definitions:");
        s.AppendLine("- **TTFT**: `GenerationResult.Timings.TimeToFirstToken` — from the call to `GenerateAsync` until the first token is chosen: store reads, placing the caches, re-rotation, the forward pass, sampling.");
        s.AppendLine("- **Full prefill**: the same documents and question with `Mode = FullPrefill` and K = 0 (the plain prompt, every token computed, in 512-token chunks against the growing cache). **ratio** = KVLink TTFT / full-prefill TTFT: pair by pair (run i with run i), then the median, when both sides have the same number of runs; otherwise the ratio of the medians.");
        s.AppendLine("- **Physical floor**: what the hardware needs at least, not our own forward: the FLOPs of the forward over the computed tokens (projections, MLP, attention of each computed token over every cached position before it, the last layer's query/MLP and the vocabulary head for the last position only) at the best bf16 GEMM rate measured in this run, plus every weight read once (bf16, vocabulary head included) at the read bandwidth, plus the cached keys/values placed and the documents' keys re-rotated (read and written once) at the copy bandwidth; the parts are added. Full prefill: the same with every prompt token computed and its keys/values written. Decode: one token's forward and the weights and cache read once.");
        s.AppendLine("- **Floor**: moving the retrieved caches' bytes (documents + shared prefix, keys and values) at the copy bandwidth above, plus one forward pass over the computed (segment-0) tokens alone against an already-filled cache, measured right after each KVLink run; TTFT/floor is taken pair by pair, then the median.");
        s.AppendLine("- **llama.cpp**: full prefill of the same token ids on the same weights (GGUF written by the benchmark), same thread count, fresh context, one `llama_decode` of the whole prompt (default micro-batch), to the last token's logits.");
        s.AppendLine();

        foreach (var m in Models)
        {
            s.AppendLine($"## {m.Description}");
            s.AppendLine();
            s.AppendLine($"Weights built in memory in {m.BuildTime.TotalSeconds:F1} s. Compute dtype **{m.DType}**{(m.Bf16CopyBytes > 0 ? $" (decoding rows read bf16 copies of the weights: {Stats.Bytes(m.Bf16CopyBytes)} more memory)" : "")}. Cache bytes per token: **{m.CacheBytesPerToken:N0} B ({m.DType})** in memory; serialized entries (`KvCacheFormat`, header and text included, at the largest context): **{m.Cells.Where(c => c.StoredBytesPerToken > 0).Select(c => c.StoredBytesPerToken).DefaultIfEmpty().Last():N0} B** per token as computed, **{m.Cells.Where(c => c.Int8BytesPerToken > 0).Select(c => c.Int8BytesPerToken).DefaultIfEmpty().Last():N0} B** with `Int8PerChannel`. Memory (process RSS, which also holds the runtime, LibTorch and earlier phases' leftovers): **{Stats.Bytes(m.RssBase)}** with the model loaded, peak **{Stats.Bytes(m.PeakRss)}** (+{Stats.Bytes(m.PeakRss - m.RssBase)}) while precomputing 10 documents ({m.DecodeContext} tokens) into the memory store and serving KVLink5 requests over them (peak of the whole phase incl. GGUF writing and llama.cpp's mapped weights: {Stats.Bytes(m.PeakRssAll)}). " +
                        $"Decode: **{m.DecodeTokensPerSecond:F1} tokens/s** (greedy, {options.DecodeTokens} tokens after a {m.DecodeContext}-token KVLink5 prefill; physical floor {1000 / m.DecodeFloorMs:F1} tokens/s, {m.DecodeFloorMs:F0} ms per token, so {Stats.X(1000 / m.DecodeTokensPerSecond / m.DecodeFloorMs)} the floor)." +
                        (m.Int8DecodeTokensPerSecond is double i8 ? $" With int8 weights (per output channel): **{i8:F1} tokens/s** ({Stats.X(i8 / m.DecodeTokensPerSecond)} the {m.DType} decode; floor {1000 / m.Int8DecodeFloorMs:F1} tokens/s){(m.Int8Deviation is null ? "" : $"; {m.Int8Deviation}")}." : ""));
            s.AppendLine();
            if (m.LogitCheck is { } lc)
                s.AppendLine($"llama.cpp correctness (f32 GGUF, f32 KV cache, flash attention off — its CPU flash attention rounds to f16 — vs our f32 forward, {lc.Tokens} tokens, all positions): max |Δlogit| = **{lc.MaxAbsDiff:E2}** (max |logit| {lc.MaxAbsLogit:F2}); argmax agrees at {lc.ArgmaxAgree}/{lc.Tokens} positions.\n");
            if (m.LlamaError is not null) s.AppendLine($"llama.cpp: not measured — {m.LlamaError}\n");
            else if (m.GgufType is not null) s.AppendLine($"llama.cpp timed on a {m.GgufType} GGUF of the same bf16 weights.\n");

            s.AppendLine("### TTFT (medians)");
            s.AppendLine();
            var ks = options.LinkTokens;
            s.Append("| store | context | prompt tokens | full prefill | its physical floor | full/floor | llama.cpp | ours/llama.cpp |");
            foreach (int k in ks) s.Append($" KVLink{k} | ratio{k} | below full{k} |");
            s.AppendLine();
            s.Append("|---|---:|---:|---:|---:|---:|---:|---:|");
            foreach (int _ in ks) s.Append("---:|---:|---:|");
            s.AppendLine();
            foreach (var c in m.Cells)
            {
                double full = Stats.Median(c.FullMs), ll = Stats.Median(c.LlamaMs);
                var pairs = c.FullMs.Zip(c.LlamaMs, (a, b) => a / b).ToList();
                var llamaRatio = c.LlamaMs.Count == 0 ? double.NaN : c.LlamaMs.Count == c.FullMs.Count ? Stats.Median(pairs) : full / ll;
                s.Append($"| {c.Store} | {c.Context} | {c.PromptTokensFull} | {Stats.Ms(full)} | {Stats.Ms(c.FullPhysicalFloorMs)} | {Stats.X(full / c.FullPhysicalFloorMs)} | {Stats.Ms(ll)} | {Stats.X(llamaRatio)} |");
                foreach (int k in ks)
                {
                    var kc = c.K[k];
                    double ratio = c.RatioToFull(kc);
                    s.Append($" {Stats.Ms(Stats.Median(kc.TtftMs))} | {ratio:F4} | {Stats.Pct(1 - ratio)} |");
                }
                s.AppendLine();
            }
            foreach (var (store, reason) in m.PendingStores) s.AppendLine($"| {store} | – | – | – | – | – | – | – |{string.Concat(ks.Select(_ => " – | – | – |"))} <!-- {reason} -->");
            s.AppendLine();
            if (m.PendingStores.Count > 0) s.AppendLine($"Pending rows: {string.Join("; ", m.PendingStores.Select(p => $"{p.Store} ({p.Reason})"))}.\n");
            var precompute = m.Cells.Where(c => c.EncodeMs > 0).Select(c => $"{c.Store} {c.Context}: **{c.Context / (c.EncodeMs / 1000):F0} tok/s** ({Stats.Ms(c.EncodeMs)})").ToList();
            if (precompute.Count > 0) s.AppendLine($"Precompute (the context's {options.Documents} documents encoded and stored, before the runs): {string.Join("; ", precompute)}.\n");

            s.AppendLine("### KVLink against its floor, and against llama.cpp");
            s.AppendLine();
            s.AppendLine("| store | context | K | computed tokens | cache bytes | TTFT | load | re-rotation | forward (in engine) | forward alone | bytes at bandwidth | floor (own forward) | TTFT/floor | physical floor | TTFT/physical floor | llama.cpp/TTFT |");
            s.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var c in m.Cells)
                foreach (int k in ks)
                {
                    var kc = c.K[k];
                    double ttft = Stats.Median(kc.TtftMs), floor = kc.FloorMs(c.Bandwidth), ll = Stats.Median(c.LlamaMs);
                    s.AppendLine($"| {c.Store} | {c.Context} | {k} | {kc.ComputedTokens} | {Stats.Bytes(kc.CacheBytes)} | {Stats.Ms(ttft)} | {Stats.Ms(Stats.Median(kc.LoadMs))} | {Stats.Ms(Stats.Median(kc.RerotateMs))} | {Stats.Ms(Stats.Median(kc.PrefillMs))} | " +
                                 $"{Stats.Ms(Stats.Median(kc.ForwardFloorMs))} | {Stats.Ms(kc.CacheBytes / c.Bandwidth * 1000)} | {Stats.Ms(floor)} | {Stats.X(Stats.Median(kc.RatioToFloor))} | {Stats.Ms(kc.PhysicalFloorMs)} | {Stats.X(ttft / kc.PhysicalFloorMs)} | {Stats.X(ll / ttft)} |");
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
            double ratio = five.RatioToFull(k5), ttft = Stats.Median(k5.TtftMs), ll = Stats.Median(five.LlamaMs);
            var memory = one!.Cells.Where(c => c.Store == "memory").ToList();
            var overFloor = memory.SelectMany(c => c.K.Values.Select(kc => Stats.Median(kc.TtftMs) / kc.PhysicalFloorMs)).ToList();
            string Met(bool ok) => ok ? "met" : "**not met**";
            s.AppendLine("| goal (1B shape, issue #18) | target | measured | |");
            s.AppendLine("|---|---|---|---|");
            s.AppendLine($"| KVLink5 TTFT at 5k (moonshot: the paper's A100 full prefill) | < 0.885 s | {Stats.Ms(ttft)} | {Met(ttft < 885)} |");
            s.AppendLine($"| KVLink TTFT / physical floor (all memory-store cells) | ≤ 1.3x | {(overFloor.Count > 0 ? $"{Stats.X(overFloor.Min())} – {Stats.X(overFloor.Max())}" : "–")} | {Met(overFloor.Count > 0 && overFloor.Max() <= 1.3)} |");
            double fullOverFloor = Stats.Median(five.FullMs) / five.FullPhysicalFloorMs;
            s.AppendLine($"| full prefill at 5k / its physical floor | ≤ 1.3x | {Stats.X(fullOverFloor)} ({Stats.Ms(Stats.Median(five.FullMs))} vs {Stats.Ms(five.FullPhysicalFloorMs)}) | {Met(fullOverFloor <= 1.3)} |");
            s.AppendLine($"| KVLink5 TTFT at 5k below the (chunked) full prefill | ≥ 97 % | {Stats.Pct(1 - ratio)} | {Met(1 - ratio >= 0.97)} |");
            if (one.Int8DecodeTokensPerSecond is double i8)
                s.AppendLine($"| int8-weight decode vs bf16 decode | ≥ 1.7x | {Stats.X(i8 / one.DecodeTokensPerSecond)} ({i8:F1} vs {one.DecodeTokensPerSecond:F1} tokens/s) | {Met(i8 / one.DecodeTokensPerSecond >= 1.7)} |");
            s.AppendLine($"| KVLink5 TTFT at 5k vs llama.cpp full prefill | (for reference) | {(double.IsNaN(ll) ? "not measured" : Stats.X(ll / ttft))} | |");
        }
        else s.AppendLine("The 1B shape at 5k tokens was not part of this run.");
        s.AppendLine();
        s.AppendLine("Notes on these figures:");
        s.AppendLine("- On the 1B shape KVLink's TTFT is almost all the forward pass over the computed tokens (link tokens, `<mem_end>`, question, generation header): placing the caches and re-rotating them costs tens of milliseconds even at 10k tokens (see the load and re-rotation columns). The ratio to full prefill is therefore set by how efficiently LibTorch's bf16 GEMMs run at ~40-90 rows versus thousands (kernel profile below), plus attention over all cached keys, which grows with the context.");
        s.AppendLine("- The 1B rows use the Llama-3-sized tokenizer (cl100k_base ranks with the Llama 3 specials), so the question and chat headers cost the ~15 computed tokens a real deployment computes; `--models 1b-bytes` repeats the shape with the byte-level tokenizer (~40).");
        s.AppendLine("- The machine is shared with other jobs (load averages above); medians and same-run ratios limit but do not remove that noise. Full prefill and llama.cpp cells with one run are single measurements, not medians.");
        s.AppendLine("- llama.cpp is timed on its fastest weight type here (f16: `--llama-probe` measured f16 < bf16 < f32 for prefill; the LLamaSharp CPU build has AVX-512 but no AVX-512 BF16 kernels), with its default flash-attention setting and micro-batch.");
        s.AppendLine();

        if (Gemm is { Count: > 0 })
        {
            s.AppendLine($"## {GemmDType} GEMM rates (same run, 1B projections; which oneDNN kernel LibTorch takes on a machine shows with `ONEDNN_VERBOSE=1 ... --gemm-rates`)");
            s.AppendLine();
            s.AppendLine(GemmRates.Header);
            foreach (var row in Gemm) s.AppendLine(row);
            s.AppendLine();
        }
        if (Attention is { Count: > 0 })
        {
            s.AppendLine($"## Attention kernels (same run; this run's engine used {(KVLink.Core.Model.GroupedAttention.UseMatmul ? "matmul + f32 softmax + matmul (`KVLINK_ATTENTION=matmul`)" : "SDPA")})");
            s.AppendLine();
            s.AppendLine(GemmRates.AttentionHeader);
            foreach (var row in Attention) s.AppendLine(row);
            s.AppendLine();
        }
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
