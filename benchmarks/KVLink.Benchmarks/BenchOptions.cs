using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace KVLink.Benchmarks;

/// <summary>What one run of the program does: the benchmark suite, or one of the single-purpose measurements.</summary>
internal enum BenchMode { Suite, LlamaProbe, ProfileLink, TrustCosts, Profile, TokenizerThroughput, GemmRates, DecodeProducts, DecodeProbe, RandomSlots, Load, Indexing, HttpLoad, Burst, ChatTurns, Soak, Allocations, PackedGemm }

/// <summary>Command-line options. Defaults are the documented full run; --quick bounds it to minutes.</summary>
internal sealed class BenchOptions
{
    public BenchMode Mode { get; set; }
    public int[] Contexts { get; set; } = [1000, 2000, 5000, 10000];
    public int[] LinkTokens { get; set; } = [0, 1, 5];
    public string[] Models { get; set; } = ["small", "demo", "1b"];
    public int Runs { get; set; } = 5;
    public int Warmup { get; set; } = 1;
    public int Threads { get; set; } = 2;
    public int Documents { get; set; } = 10;
    /// <summary>Contexts at which llama.cpp full prefill is timed (its runs cost as much as ours).</summary>
    public int[]? LlamaContexts { get; set; }
    /// <summary>Runs of the full-prefill pair (ours + llama.cpp) when fewer than Runs are wanted at large contexts; null = Runs.</summary>
    public int? FullRuns { get; set; }
    /// <summary>Whether warm-up runs also run full prefill and llama.cpp (costly at large contexts; off with --quick).</summary>
    public bool FullWarmup { get; set; } = true;
    /// <summary>Contexts up to this size run full prefill and llama.cpp --runs times even when --full-runs is smaller.</summary>
    public int FullRunsUpTo { get; set; }
    /// <summary>At most this many llama.cpp runs per context (they pair with the first full-prefill runs); null = as many as full prefill.</summary>
    public int? LlamaRuns { get; set; }
    public bool SkipLlamaCpp { get; set; }
    /// <summary>Which of LLamaSharp's CPU builds runs llama.cpp: null lets LLamaSharp pick by CPUID; noavx, avx, avx2 or avx512 loads that build (the emulated tiers pass theirs).</summary>
    public string? LlamaBuild { get; set; }
    public bool SkipMicro { get; set; }
    public bool Quick { get; set; }
    public int DecodeTokens { get; set; } = 32;
    /// <summary>Also decode with int8 weights (KvLinkOptions.DecodeWithInt8Weights) and measure their logit deviation.</summary>
    public bool Int8Decode { get; set; } = true;
    public string Output { get; set; } = "docs/benchmarks.md";
    public string? GgufType { get; set; } = "f16";
    /// <summary>Compute dtype of the suite's models: Auto (the engine's default: bf16 where the CPU computes it natively, else float32), BFloat16 or Float32.</summary>
    public KVLink.Core.Engine.ComputeDType DType { get; set; } = KVLink.Core.Engine.ComputeDType.Auto;

    /// <summary>The element type of the kernel probes (--gemm-rates, --profile-link): float32 with --dtype float32, else bf16.</summary>
    public TorchSharp.torch.ScalarType ProbeType => DType == KVLink.Core.Engine.ComputeDType.Float32 ? TorchSharp.torch.ScalarType.Float32 : TorchSharp.torch.ScalarType.BFloat16;
    public string CommandLine { get; set; } = "";
    /// <summary>--load: concurrent users of the closed-loop levels.</summary>
    public int[] Users { get; set; } = [1, 2, 4, 8, 16];
    /// <summary>--load: requests per user in the closed loop.</summary>
    public int LoadRounds { get; set; } = 2;
    /// <summary>--load: new tokens per request.</summary>
    public int LoadTokens { get; set; } = 16;
    /// <summary>--load: cached documents per request and their total tokens.</summary>
    public int LoadDocuments { get; set; } = 4;
    public int LoadContext { get; set; } = 400;
    /// <summary>--load: documents (and tokens each) of the indexing comparison; 0 skips it.</summary>
    public int IndexDocuments { get; set; } = 12;
    /// <summary>--soak: distinct conversations (two turns each).</summary>
    public int Conversations { get; set; } = 2000;
    /// <summary>--soak: the session budget in MiB.</summary>
    public int SessionMiB { get; set; } = 16;
    /// <summary>--allocations: requests measured per call.</summary>
    public int Requests { get; set; } = 32;
    public int IndexDocumentTokens { get; set; } = 500;
    /// <summary>Stores to measure (name prefixes: memory, file, distributed, redis-server); null = all.</summary>
    public string[]? Stores { get; set; }

    /// <summary>The program's command line: every option, its help text and its validation; <paramref name="run"/> gets the parsed options.</summary>
    public static RootCommand CreateCommand(string[] args, Func<BenchOptions, Task> run)
    {
        var modes = new (Option<bool> Option, BenchMode Mode)[]
        {
            (Flag("--llama-probe", "only: llama.cpp prefill of 512 tokens of a 1B-shape model per GGUF type (F16, F32, BF16, Q8_0)"), BenchMode.LlamaProbe),
            (Flag("--profile-link", "only: profile of one KVLink link step (--dtype float32 for float32)"), BenchMode.ProfileLink),
            (Flag("--packed-gemm", "only: float32 1B projections, LibTorch's linear against MKL's packed GEMM"), BenchMode.PackedGemm),
            (Flag("--trust-costs", "only: the cost of the cache-trust checks (slow)"), BenchMode.TrustCosts),
            (Flag("--profile", "only: the kernel profile (1B-shape linear and attention)"), BenchMode.Profile),
            (Flag("--decode-probe", "only: decode tok/s on the 1B shape, ours bf16 and int8 weights vs llama.cpp on a Q8_0 GGUF of the same weights"), BenchMode.DecodeProbe),
            (Flag("--decode-products", "only: every weight product of one 1B decode step at 1-16 decoding rows, LibTorch's GEMM against the decode kernel (bf16, weights from DRAM)"), BenchMode.DecodeProducts),
            (Flag("--gemm-rates", "only: bf16 GEMM rates of the 1B projections at T = 1..1024, separate and fused (run with ONEDNN_VERBOSE=1 to see LibTorch's kernel)"), BenchMode.GemmRates),
            (Flag("--random-slots", "only: documents precomputed once, then queried in random slots under each slot policy (TTFT and computed tokens beside full prefill; honours --models, --contexts, --runs, --k)"), BenchMode.RandomSlots),
            (Flag("--load", "only: the serving benchmark (continuous batching): closed-loop users (--users), an open-loop Poisson arrival, the serial baseline, corpus indexing and the ragged/padded attention kernel; writes --out"), BenchMode.Load),
            (Flag("--indexing", "only: the indexing comparison of --load, PrecomputeAllAsync of --index-docs documents of --index-doc-tokens (batched, and one document per forward) beside full prefill at 1k timed before and after; honours --models; writes --out"), BenchMode.Indexing),
            (Flag("--http-load", "only: the ASP.NET sample under load: the real app (demo model) as a child process, closed-loop parallel streaming HTTP clients (--users, --load-rounds, --load-tokens) and its serial baseline (MaxRunningSequences 1); writes --out"), BenchMode.HttpLoad),
            (Flag("--burst", "only: issue 26's burst: --users (one value, default 8) requests arriving together on the demo model, the slowest TTFT against one request's alone, in process and over HTTP (--load-rounds rounds, at least 8; --load-tokens); writes --out"), BenchMode.Burst),
            (Flag("--chat-turns", "only: a 5-turn conversation over 10 documents on the 1B shape (float32), session reuse vs recompute (--runs conversations)"), BenchMode.ChatTurns),
            (Flag("--soak", "only: issue 28's soak: --conversations distinct ~940-token conversations, two turns each, 8 at a time, under session eviction (--session-mb) persisted to a memory store; reports exceptions, requests and wall time"), BenchMode.Soak),
            (Flag("--allocations", "only: managed bytes allocated per request (GenerateAsync and streaming), demo model, K = 5, --requests questions one at a time after a warm-up; --load-tokens new tokens at most; writes --out"), BenchMode.Allocations),
            (Flag("--tokenizer-throughput", "only: encode throughput of the Llama-3-sized tokenizer, and the pre-tokenizer scanner against Regex"), BenchMode.TokenizerThroughput),
        };
        var quick = Flag("--quick", "1k and 5k contexts, 5 KVLink runs, 1 full-prefill run, llama.cpp at 1k only (options given with it still win)");
        var contexts = IntList("--contexts", "context sizes in tokens (documents only; default 1000,2000,5000,10000)");
        var k = IntList("--k", "link tokens per document (default 0,1,5)");
        var models = new Option<string[]>("--models")
        {
            Description = "models to measure: small, demo, 1b (Llama-3-sized tokenizer), 1b-bytes (byte-level tokenizer), or none (demo: models/kvlink-demo, contexts up to its 2048 positions; default small,demo,1b)",
            HelpName = "small,demo,1b",
            CustomParser = r => [.. Split(r).Where(m => m != "none")],
        };
        models.Validators.Add(r =>
        {
            foreach (string m in r.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).Where(m => m is not ("small" or "demo" or "1b" or "1b-bytes" or "none")))
                r.AddError($"--models: unknown model '{m}' (small, demo, 1b, 1b-bytes, none).");
        });
        var runs = Int("--runs", "measured runs per cell after warm-up (median reported; default 5)");
        var fullRuns = Int("--full-runs", "runs of the slow full-prefill/llama.cpp cells (default = --runs)");
        var fullRunsUpTo = Int("--full-runs-upto", "contexts <= C still get --runs full-prefill/llama.cpp runs", "C", minimum: 0);
        var llamaRuns = Int("--llama-runs", "at most N llama.cpp runs per context (paired with the first full-prefill runs)", minimum: 0);
        var llamaContexts = IntList("--llama-contexts", "contexts at which llama.cpp is timed (default = --contexts)");
        var warmup = Int("--warmup", "warm-up runs per cell (default 1)", minimum: 0);
        var noFullWarmup = Flag("--no-full-warmup", "warm-up runs skip full prefill and llama.cpp (precompute has run the same kernels)");
        var threads = Int("--threads", "threads for LibTorch and llama.cpp (default 2)");
        var ggufType = new Option<string>("--gguf-type")
        {
            Description = "weight type of the GGUF used for llama.cpp timing (default f16, llama.cpp's fastest here; bf16 is bit-identical)",
            HelpName = "bf16|f16|f32|q8_0",
        };
        ggufType.AcceptOnlyFromAmong("bf16", "f16", "f32", "q8_0");
        var stores = new Option<string[]>("--stores")
        {
            Description = "stores to measure (name prefixes: memory, file, distributed, redis-server; default all). redis-server: one node and a 3-master Redis Cluster on 127.0.0.1 (Debian's redis-server, started and stopped by the run), plus the read bandwidth of one whole-context entry from each",
            HelpName = "memory,file,distributed,redis-server",
            CustomParser = r => Split(r),
        };
        var skipLlama = Flag("--skip-llamacpp", "do not load or time llama.cpp");
        var llamaBuild = new Option<string>("--llama-build")
        {
            Description = "which of LLamaSharp's CPU builds runs llama.cpp (default auto: LLamaSharp reads CPUID, so the .NET/ATen knobs do not reach it; an emulated tier passes its own, e.g. avx2)",
            HelpName = "auto|noavx|avx|avx2|avx512",
        };
        llamaBuild.AcceptOnlyFromAmong("auto", "noavx", "avx", "avx2", "avx512");
        var skipMicro = Flag("--skip-micro", "skip the kernel profile and the BenchmarkDotNet micro-benchmarks");
        var noInt8 = Flag("--no-int8-decode", "skip the int8-weight decode measurement");
        var decodeTokens = Int("--decode-tokens", "tokens generated when measuring decode speed (default 32)");
        var users = IntList("--users", "--load, --http-load: concurrent users of the closed loop (default 1,2,4,8,16)");
        var loadRounds = Int("--load-rounds", "--load, --http-load: requests per user (default 2)");
        var loadTokens = Int("--load-tokens", "--load, --http-load: new tokens per request (--http-load: max_tokens; default 16)");
        var indexDocs = Int("--index-docs", "--load: documents of the indexing comparison, 0 skips it (default 12)", minimum: 0);
        var conversations = Int("--conversations", "--soak: distinct conversations, two turns each (default 2000)");
        var sessionMiB = Int("--session-mb", "--soak: SessionCacheBytes in MiB (default 16)", minimum: 0);
        var requests = Int("--requests", "--allocations: requests measured per call (default 32)");
        var indexDocTokens = Int("--index-doc-tokens", "--load: tokens per indexed document (default 500)");
        var dtype = new Option<string>("--dtype")
        {
            Description = "compute dtype of the suite's models: auto (default, resolved as the engine resolves ComputeDType.Auto), bf16 or float32",
            HelpName = "auto|bf16|float32",
        };
        dtype.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is { } v && ParseDType(v) is null) r.AddError($"--dtype: '{v}' is not a dtype (auto, bf16, float32).");
        });
        var output = new Option<string>("--out") { Description = "report file (default docs/benchmarks.md)", HelpName = "file" };

        var root = new RootCommand("KVLink.Core benchmark suite: TTFT of KVLink vs full prefill vs llama.cpp, floors, decode speed, memory, and micro-benchmarks; writes docs/benchmarks.md.");
        foreach (var (option, _) in modes) root.Add(option);
        Option[] all = [quick, contexts, k, models, runs, fullRuns, fullRunsUpTo, llamaRuns, llamaContexts, warmup, noFullWarmup, threads, ggufType, stores, skipLlama, llamaBuild, skipMicro, noInt8, decodeTokens, dtype, output, users, loadRounds, loadTokens, indexDocs, indexDocTokens, conversations, sessionMiB, requests];
        foreach (var option in all) root.Add(option);
        root.Validators.Add(r =>
        {
            var chosen = modes.Where(m => r.GetResult(m.Option) is { Implicit: false }).Select(m => m.Option.Name).ToList();
            if (chosen.Count > 1) r.AddError($"{string.Join(" and ", chosen)} cannot be combined: each is a run of its own.");
        });

        root.SetAction(async (r, _) =>
        {
            var o = new BenchOptions { CommandLine = string.Join(' ', args) };
            o.Mode = modes.Where(m => r.GetValue(m.Option)).Select(m => m.Mode).FirstOrDefault(BenchMode.Suite);
            if (r.GetValue(quick))
            {
                o.Quick = true;
                o.Contexts = [1000, 5000];
                o.Runs = 5;
                o.FullRuns = 1;
                o.LlamaContexts = [1000];
                o.FullWarmup = false;
            }
            // Only options on the command line replace the defaults (or the --quick preset).
            bool Has(Option option) => r.GetResult(option) is { Implicit: false };
            if (r.GetValue(noFullWarmup)) o.FullWarmup = false;
            if (Has(llamaRuns)) o.LlamaRuns = r.GetValue(llamaRuns);
            if (Has(fullRunsUpTo)) o.FullRunsUpTo = r.GetValue(fullRunsUpTo);
            if (Has(contexts)) o.Contexts = r.GetValue(contexts)!;
            if (Has(k)) o.LinkTokens = r.GetValue(k)!;
            if (Has(models)) o.Models = r.GetValue(models)!;
            if (Has(runs)) o.Runs = r.GetValue(runs);
            if (Has(conversations)) o.Conversations = r.GetValue(conversations);
            if (Has(sessionMiB)) o.SessionMiB = r.GetValue(sessionMiB);
            if (Has(requests)) o.Requests = r.GetValue(requests);
            if (Has(fullRuns)) o.FullRuns = r.GetValue(fullRuns);
            if (Has(warmup)) o.Warmup = r.GetValue(warmup);
            if (Has(threads)) o.Threads = r.GetValue(threads);
            if (Has(llamaContexts)) o.LlamaContexts = r.GetValue(llamaContexts);
            if (r.GetValue(skipLlama)) o.SkipLlamaCpp = true;
            if (Has(llamaBuild) && r.GetValue(llamaBuild) is { } build && build != "auto") LlamaCppRunner.Build = o.LlamaBuild = build;
            if (r.GetValue(skipMicro)) o.SkipMicro = true;
            if (r.GetValue(noInt8)) o.Int8Decode = false;
            if (Has(decodeTokens)) o.DecodeTokens = r.GetValue(decodeTokens);
            if (Has(ggufType)) o.GgufType = r.GetValue(ggufType);
            if (Has(output)) o.Output = r.GetValue(output)!;
            if (Has(dtype)) o.DType = ParseDType(r.GetValue(dtype)!)!.Value;
            if (Has(stores)) o.Stores = r.GetValue(stores);
            if (Has(users)) o.Users = r.GetValue(users)!;
            if (Has(loadRounds)) o.LoadRounds = r.GetValue(loadRounds);
            if (Has(loadTokens)) o.LoadTokens = r.GetValue(loadTokens);
            if (Has(indexDocs)) o.IndexDocuments = r.GetValue(indexDocs);
            if (Has(indexDocTokens)) o.IndexDocumentTokens = r.GetValue(indexDocTokens);
            if (o.Mode == BenchMode.Indexing && !Has(output)) o.Output = Path.Combine(Path.GetTempPath(), "kvlink-indexing.md");
            if (o.Mode == BenchMode.Load && !Has(output)) o.Output = Path.Combine(Path.GetTempPath(), "kvlink-load.md");
            if (o.Mode == BenchMode.Burst && !Has(output)) o.Output = Path.Combine(Path.GetTempPath(), "kvlink-burst.md");
            if (o.Mode == BenchMode.Allocations && !Has(output)) o.Output = Path.Combine(Path.GetTempPath(), "kvlink-allocations.md");
            if (o.Mode == BenchMode.HttpLoad && !Has(output)) o.Output = Path.Combine(Path.GetTempPath(), "kvlink-http-load.md");
            await run(o);
            return 0;
        });
        return root;
    }

    private static KVLink.Core.Engine.ComputeDType? ParseDType(string value) => value.ToLowerInvariant() switch
    {
        "auto" => KVLink.Core.Engine.ComputeDType.Auto,
        "bf16" or "bfloat16" => KVLink.Core.Engine.ComputeDType.BFloat16,
        "float32" or "f32" or "fp32" => KVLink.Core.Engine.ComputeDType.Float32,
        _ => null,
    };

    private static Option<bool> Flag(string name, string description) => new(name) { Description = description, Arity = ArgumentArity.Zero };

    /// <summary>A whole-number option; a malformed value or one below <paramref name="minimum"/> (default 1) is a parse error.</summary>
    private static Option<int> Int(string name, string description, string helpName = "N", int minimum = 1) => new(name)
    {
        Description = description,
        HelpName = helpName,
        CustomParser = r =>
        {
            string text = r.Tokens.Single().Value;
            if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value))
                r.AddError($"{name}: '{text}' is not a whole number.");
            else if (value < minimum)
                r.AddError($"{name} must be at least {minimum} (got {value}).");
            return value;
        },
    };

    /// <summary>A comma-separated list of positive integers ("1000,5000"); a malformed item is a parse error naming it.</summary>
    private static Option<int[]> IntList(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "N,N,...",
        CustomParser = r =>
        {
            string[] items = Split(r);
            var values = new int[items.Length];
            for (int i = 0; i < items.Length; i++)
            {
                if (!int.TryParse(items[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] < 0)
                {
                    r.AddError($"{name}: '{items[i]}' is not a whole number (expected a comma-separated list such as 1000,5000).");
                    return [];
                }
            }
            if (items.Length == 0) r.AddError($"{name} needs at least one value.");
            return values;
        },
    };

    private static string[] Split(ArgumentResult r) =>
        [.. r.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];
}
