// KVLink.Core benchmark suite: TTFT of KVLink vs full prefill vs llama.cpp, floors, decode speed, memory,
// and micro-benchmarks; writes docs/benchmarks.md. See --help for the options that bound a run.
using System.Diagnostics;
using KVLink.Benchmarks;
using KVLink.Core.Model;
using KVLink.Core.Native;
using static TorchSharp.torch;

return await BenchOptions.CreateCommand(args, RunAsync).Parse(args).InvokeAsync();

static async Task RunAsync(BenchOptions options)
{
    switch (options.Mode)
    {
        case BenchMode.LlamaProbe: KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); set_num_threads(2); LlamaProbe.Run(2, 512); return;
        case BenchMode.ProfileLink: KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); LinkProfile.Run(2, options.ProbeType); return;
        case BenchMode.TrustCosts: KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); set_num_threads(2); TrustCosts.Run(2); return;
        case BenchMode.Profile: KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); Profile.Run(2, Console.WriteLine); return;
        case BenchMode.TokenizerThroughput: TokenizerThroughput.Run(Console.WriteLine); return;
        case BenchMode.DecodeProducts: KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); DecodeProducts.Run(options.Threads, Console.WriteLine); return;
        case BenchMode.DecodeProbe: KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); DecodeProbe.Run(options.Threads); return;
        case BenchMode.GemmRates:
            KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
            var rateType = options.ProbeType;
            Console.WriteLine(GemmRates.Header);
            Console.WriteLine($"best: {GemmRates.Run(options.Threads, Console.WriteLine, rateType).Best / 1e9:F0} GFLOP/s; load {Machine.LoadAverage()}");
            Console.WriteLine(GemmRates.AttentionHeader);
            GemmRates.Attention(options.Threads, Console.WriteLine, rateType);
            Console.WriteLine($"load {Machine.LoadAverage()}");
            return;
        case BenchMode.RandomSlots: await RandomSlots.RunAsync(options); return;
        case BenchMode.Load: await LoadBench.RunAsync(options); return;
        case BenchMode.Indexing: await LoadBench.IndexingOnlyAsync(options); return;
        case BenchMode.HttpLoad: await HttpLoadBench.RunAsync(options); return;
        case BenchMode.Burst: await BurstBench.RunAsync(options); return;
        case BenchMode.Allocations: await Allocations.RunAsync(options); return;
        case BenchMode.PackedGemm: KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); PackedGemm.Run(options.Threads); return;
        case BenchMode.Soak: await Soak.RunAsync(options, s => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}")); return;
        case BenchMode.ChatTurns: await ChatTurns.RunAsync(options.Threads, options.Runs, s => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {s}")); return;
    }
    await RunSuiteAsync(options);
}

static async Task RunSuiteAsync(BenchOptions options)
{
    var total = Stopwatch.StartNew();
    void Log(string s) => Console.WriteLine($"[{total.Elapsed:hh\\:mm\\:ss}] {s}");

    KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
    set_num_threads(options.Threads);
    set_num_interop_threads(1);
    var report = new Report(options) { Machine = Machine.Describe(), LoadBefore = Machine.LoadAverage() };
    Log(report.Machine);
    // The compute dtype as the engine resolves it (Auto: the tier, and the cached calibration GEMMs where the tier cannot tell).
    var choice = KVLink.Core.Engine.ComputeDTypeChoice.Resolve(new KVLink.Core.Engine.KvLinkOptions { DType = options.DType }, device: null);
    var cpu = KVLink.Core.Native.CpuCapabilities.Current;
    var libTorch = KVLink.Core.Native.LibTorchCpuInfo.Current;
    report.Tier = $"CPU tier **{cpu.Tier.Name()}** ({cpu.Model}; LibTorch ATen {libTorch.Aten}, oneDNN {libTorch.OneDnn}, MKL {libTorch.MklOverride ?? "no override"}" +
                  $"{(Environment.GetEnvironmentVariable("DOTNET_EnableAVX512") == "0" || Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") == "0" || libTorch.Capped ? "; ISAs switched off by env knobs: **emulated tier**" : "")}); compute dtype **{choice.DType}** ({choice.Reason}{(options.DType == KVLink.Core.Engine.ComputeDType.Auto ? ", --dtype auto" : "")})";
    Log(report.Tier.Replace("**", "", StringComparison.Ordinal));

    report.CopyBandwidth = Machine.CopyBandwidth();
    Log($"copy bandwidth {report.CopyBandwidth / 1e9:F1} GB/s");
    report.ReadBandwidth = Machine.ReadBandwidth(options.Threads);
    Log($"read bandwidth {report.ReadBandwidth / 1e9:F1} GB/s");
    // In the compute dtype, whose best rate the physical floors charge compute at (float32's FMA peak where Auto picks float32).
    report.GemmDType = choice.DType == KVLink.Core.Engine.ComputeDType.Float32 ? "float32" : "bf16";
    Log($"{report.GemmDType} GEMM rates (1B projections, separate and fused)");
    (report.Gemm, report.GemmBest) = GemmRates.Run(options.Threads, Log, choice.ScalarType);
    Log($"best {report.GemmDType} GEMM rate {report.GemmBest / 1e9:F0} GFLOP/s");
    Log($"attention kernels (attention path: {(KVLink.Core.Model.GroupedAttention.UseMatmul ? "matmul" : "SDPA")})");
    report.Attention = GemmRates.Attention(options.Threads, Log, choice.ScalarType);

    string temp = Path.Combine(Path.GetTempPath(), $"kvlink-bench-{Environment.ProcessId}");
    Directory.CreateDirectory(temp);
    Machine.DiskBandwidth = Machine.MeasureDiskBandwidth(temp);
    Log($"disk read bandwidth {Machine.DiskBandwidth / 1e9:F2} GB/s");
    try
    {
        if (!options.SkipLlamaCpp) report.LlamaCppInfo = SafeDescribeLlama();
        // Cheap parts first, so a run stopped early still has them.
        if (!options.SkipMicro)
        {
            Log("kernel profile (1B-shape linear and attention)");
            report.Kernels = Profile.Run(options.Threads);
            Log("micro-benchmarks (BenchmarkDotNet, short in-process job)");
            report.Micro = MicroBenchmarks.Run(options, Path.Combine(temp, "micro"));
        }
        foreach (string name in options.Models)
        {
            Machine.ResetPeakRss();
            Log(name == "demo" ? $"loading the demo model (models/kvlink-demo, {choice.DType})" : $"building model {name} (random bf16-valued weights in {choice.DType}, in memory)");
            using var m = BenchModel.Create(name, Path.Combine(temp, name), choice.ScalarType);
            // As KvLinkEngine.LoadAsync does for a float32 model that Auto chose: decoding rows read bf16 copies.
            long copies = choice.FromAuto ? m.Model.KeepBf16ForDecoding() : 0;
            if (copies > 0) Log($"  bf16 copies for decoding rows: {copies >> 20} MiB");
            var mr = new ModelReport(m.Name, m.Description, m.BuildTime, m.CacheBytesPerToken()) { DType = choice.DType.ToString(), Bf16CopyBytes = copies };
            report.Models.Add(mr);
            Log($"  built in {m.BuildTime.TotalSeconds:F1} s");
            var floor = new PhysicalFloor(m.Config, report.GemmBest, report.ReadBandwidth, report.CopyBandwidth);
            var bench = new TtftBench(m, options, report.CopyBandwidth, Log) { Floor = floor };

            // Decode speed and our engine's memory, before llama.cpp maps its copy of the weights.
            GC.Collect();
            Machine.ResetPeakRss();
            mr.RssBase = Machine.Rss();
            int decodeCtx = options.Contexts.Where(c => c + 256 <= m.Config.MaxPositionEmbeddings).DefaultIfEmpty(m.Config.MaxPositionEmbeddings / 2).Min();
            (mr.DecodeTokensPerSecond, _) = await bench.DecodeAsync(decodeCtx, options.DecodeTokens);
            mr.DecodeContext = decodeCtx;
            mr.DecodeFloorMs = floor.DecodeMs(decodeCtx, weightBytesPerElement: m.Model.DType == ScalarType.Float32 && copies == 0 ? 4 : 2); // float32 decoding reads bf16 copies where Auto keeps them
            mr.PeakRss = Machine.PeakRss();
            if (options.Int8Decode && name != "demo")
            {
                // The engine quantizes the shared model; only decode steps use the copies, so the TTFT cells below are unchanged.
                (double i8, _) = await bench.DecodeAsync(decodeCtx, options.DecodeTokens, int8: true);
                mr.Int8DecodeTokensPerSecond = i8;
                mr.Int8DecodeFloorMs = floor.DecodeMs(decodeCtx, weightBytesPerElement: 1);
                mr.Int8Deviation = Int8Check.Describe(m, decodeCtx);
                Log($"  int8 decode {i8:F1} tok/s ({i8 / mr.DecodeTokensPerSecond:F2}x the {choice.DType} decode); {mr.Int8Deviation}");
            }
            Log($"  decode {mr.DecodeTokensPerSecond:F1} tok/s after a {decodeCtx}-token KVLink5 prefill; RSS {mr.RssBase >> 20} MiB before, peak {mr.PeakRss >> 20} MiB");

            LlamaCppRunner? llama = null;
            if (!options.SkipLlamaCpp && name != "demo") // the demo model's BPE tokenizer has no GGUF writer here; llama.cpp is compared on the other shapes
            {
                try
                {
                    if (name == "small") mr.LogitCheck = LogitCheck(m, temp, options);
                    var type = GgufWriter.ParseType(options.GgufType ?? "bf16");
                    string gguf = Path.Combine(temp, $"{name}-{type}.gguf");
                    var c = Stopwatch.StartNew();
                    GgufWriter.Write(gguf, m.Model, m.Tokenizer, type);
                    Log($"  wrote {gguf} ({new FileInfo(gguf).Length >> 20} MiB, {type}) in {c.Elapsed.TotalSeconds:F1} s");
                    mr.GgufType = type.ToString();
                    llama = new LlamaCppRunner(gguf, options.Contexts.Max() + 512, options.Threads);
                }
                catch (Exception e)
                {
                    mr.LlamaError = $"{e.GetType().Name}: {e.Message}";
                    Log($"  llama.cpp unavailable: {mr.LlamaError}");
                    foreach (var line in LlamaCppRunner.Log.TakeLast(15)) Log($"    {line}");
                }
            }

            using var stores = new BenchStores(Path.Combine(temp, "stores-" + name));
            foreach (var store in StoreUnderTest.All(stores).Where(s => options.Stores is null || options.Stores.Any(n => s.Name.StartsWith(n, StringComparison.Ordinal))))
            {
                if (store.Create is null) { mr.PendingStores.Add((store.Name, store.PendingReason ?? "pending")); continue; }
                foreach (int ctx in options.Contexts)
                {
                    if (ctx + 256 > m.Config.MaxPositionEmbeddings) { Log($"  {m.Name}: context {ctx} skipped (the model has {m.Config.MaxPositionEmbeddings} positions)"); continue; }
                    bool timeLlama = llama is not null && store.Name == "memory" && (options.LlamaContexts ?? options.Contexts).Contains(ctx);
                    var cell = await bench.RunAsync(store, ctx, llama, timeLlama);
                    mr.Cells.Add(cell);
                    WriteReport(report, options, total.Elapsed, partial: true); // a bounded session still leaves a report
                    foreach (var (k, kc) in cell.K)
                        Log($"    K={k}: TTFT {Stats.Median(kc.TtftMs):F1} ms (floor {kc.FloorMs(cell.Bandwidth):F1} ms, TTFT/floor {Stats.Median(kc.RatioToFloor):F2}), full {Stats.Median(cell.FullMs):F0} ms, ratio {cell.RatioToFull(kc):F4}; physical floor {kc.PhysicalFloorMs:F0} ms, full prefill's {cell.FullPhysicalFloorMs:F0} ms");
                    if (store.Name is StoreUnderTest.RedisSingle or StoreUnderTest.RedisCluster)
                    {
                        // Read bandwidth of one entry as long as the whole context, from the same server(s).
                        var read = await stores.ReadBandwidthAsync(store.Name, store.Name == StoreUnderTest.RedisCluster, m.Config, ctx, options.Runs);
                        mr.Reads.Add(read);
                        Log($"    one {ctx}-token entry ({Stats.Bytes(read.Bytes)}): GetAsync {Stats.Ms(read.MedianMs)} median of {read.Ms.Count}, {read.BytesPerSecond / 1e9:F2} GB/s");
                        WriteReport(report, options, total.Elapsed, partial: true);
                    }
                }
            }
            mr.PeakRssAll = Machine.PeakRss();
            llama?.Dispose();
            GC.Collect();
        }

    }
    finally
    {
        try { Directory.Delete(temp, recursive: true); } catch (IOException) { }
    }

    WriteReport(report, options, total.Elapsed, partial: false);
    Log($"wrote {options.Output} ({total.Elapsed.TotalMinutes:F1} min)");
}

static void WriteReport(Report report, BenchOptions options, TimeSpan elapsed, bool partial)
{
    report.LoadAfter = Machine.LoadAverage();
    report.Elapsed = elapsed;
    report.Partial = partial;
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(options.Output))!);
    File.WriteAllText(options.Output, report.ToMarkdown());
}

static string SafeDescribeLlama()
{
    try { return LlamaCppRunner.Describe(); } catch (Exception e) { return $"failed to load: {e.GetType().Name}: {e.Message}"; }
}

// Correctness before timing: llama.cpp's logits on an f32 GGUF of the small model against ours in f32.
static LogitCheckResult LogitCheck(BenchModel m, string temp, BenchOptions options)
{
    using var _ = no_grad();
    using var scope = NewDisposeScope();
    using var f32 = new LlamaForCausalLM(m.Config, ScalarType.Float32);
    foreach (var ((_, dst), (_, src)) in f32.named_parameters().Zip(m.Model.named_parameters())) dst.copy_(src.to(ScalarType.Float32));
    string path = Path.Combine(temp, "small-check-f32.gguf");
    GgufWriter.Write(path, f32, m.Tokenizer, GgufWriter.GgmlType.F32);
    var docs = TtftBench.MakeDocuments(m, 300, 3);
    var format = KVLink.Core.Prompting.KvLinkLlama3Format.FromTokenizer(m.Tokenizer);
    var layout = format.Build(m.Tokenizer, [.. docs.Select((d, j) => format.Document(m.Tokenizer, d, j))], TtftBench.Question, 0);
    int[] tokens = [.. layout.Tokens];
    using var runner = new LlamaCppRunner(path, tokens.Length + 16, options.Threads, f32Cache: true);
    var theirs = runner.AllLogits(tokens);
    var ours = f32.Forward(tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]))[0];
    var theirsT = tensor(theirs.SelectMany(r => r).ToArray(), [tokens.Length, theirs[0].Length]);
    double maxDiff = (ours - theirsT).abs().max().item<float>();
    double scale = ours.abs().max().item<float>();
    long agree = (ours.argmax(-1) == theirsT.argmax(-1)).sum().item<long>();
    return new LogitCheckResult(tokens.Length, maxDiff, scale, agree);
}
