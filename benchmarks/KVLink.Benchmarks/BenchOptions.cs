using System.Globalization;

namespace KVLink.Benchmarks;

/// <summary>Command-line options. Defaults are the documented full run; --quick bounds it to minutes.</summary>
public sealed class BenchOptions
{
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
    public bool SkipMicro { get; set; }
    public bool Quick { get; set; }
    public int DecodeTokens { get; set; } = 32;
    public string Output { get; set; } = "docs/benchmarks.md";
    public string? GgufType { get; set; } = "f16";
    public string CommandLine { get; set; } = "";
    /// <summary>Stores to measure (name prefixes: memory, file, distributed); null = all.</summary>
    public string[]? Stores { get; set; }

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions { CommandLine = string.Join(' ', args) };
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value");
            switch (a)
            {
                case "--quick":
                    o.Quick = true;
                    o.Contexts = [1000, 5000];
                    o.Runs = 5;
                    o.FullRuns = 1;
                    o.LlamaContexts = [1000];
                    o.FullWarmup = false;
                    break;
                case "--no-full-warmup": o.FullWarmup = false; break;
                case "--llama-runs": o.LlamaRuns = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--full-runs-upto": o.FullRunsUpTo = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--contexts": o.Contexts = Ints(Next()); break;
                case "--k": o.LinkTokens = Ints(Next()); break;
                case "--models": o.Models = [.. Next().Split(',', StringSplitOptions.RemoveEmptyEntries).Where(m => m != "none")]; break;
                case "--runs": o.Runs = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--full-runs": o.FullRuns = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--warmup": o.Warmup = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--threads": o.Threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--llama-contexts": o.LlamaContexts = Ints(Next()); break;
                case "--skip-llamacpp": o.SkipLlamaCpp = true; break;
                case "--skip-micro": o.SkipMicro = true; break;
                case "--decode-tokens": o.DecodeTokens = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--gguf-type": o.GgufType = Next(); break;
                case "--out": o.Output = Next(); break;
                case "--stores": o.Stores = Next().Split(',', StringSplitOptions.RemoveEmptyEntries); break;
                case "--help" or "-h":
                    Console.WriteLine("""
                        KVLink.Benchmarks [options]
                          --quick                 1k and 5k contexts, 5 KVLink runs, 1 full-prefill run, llama.cpp at 1k only
                          --contexts 1000,5000    context sizes in tokens (documents only)
                          --k 0,1,5               link tokens per document
                          --models small,demo,1b  models to measure (demo: models/kvlink-demo, contexts up to its 2048 positions)
                          --runs N                measured runs per cell after warm-up (median reported; default 5)
                          --full-runs N           runs of the slow full-prefill/llama.cpp cells (default = --runs)
                          --full-runs-upto C      contexts <= C still get --runs full-prefill/llama.cpp runs
                          --llama-runs N          at most N llama.cpp runs per context (paired with the first full-prefill runs)
                          --llama-contexts 1000   contexts at which llama.cpp is timed (default = --contexts)
                          --warmup N              warm-up runs per cell (default 1)
                          --no-full-warmup        warm-up runs skip full prefill and llama.cpp (precompute has run the same kernels)
                          --threads N             threads for LibTorch and llama.cpp (default 2)
                          --gguf-type bf16|f16|f32  weight type of the GGUF used for llama.cpp timing (default f16, llama.cpp's fastest here; bf16 is bit-identical)
                          --stores memory,file,distributed   stores to measure (name prefixes; default all)
                          --skip-llamacpp --skip-micro
                          --out docs/benchmarks.md
                        """);
                    Environment.Exit(0);
                    break;
                default: throw new ArgumentException($"Unknown option '{a}' (try --help).");
            }
        }
        return o;
    }

    private static int[] Ints(string s) => [.. s.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(x => int.Parse(x, CultureInfo.InvariantCulture))];
}
