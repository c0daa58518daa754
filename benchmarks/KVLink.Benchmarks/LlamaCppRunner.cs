using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;

namespace KVLink.Benchmarks;

/// <summary>llama.cpp (through LLamaSharp and its CPU backend) over a GGUF we wrote from our own weights.</summary>
internal sealed class LlamaCppRunner : IDisposable
{
    private static readonly List<string> NativeLog = [];
    private static bool _configured;
    private readonly LLamaWeights _weights;
    private readonly ModelParams _params;

    public LlamaCppRunner(string ggufPath, int contextSize, int threads, bool f32Cache = false)
    {
        ConfigureOnce();
        _params = new ModelParams(ggufPath)
        {
            ContextSize = (uint)contextSize,
            BatchSize = (uint)contextSize,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
        };
        if (f32Cache)
        {
            _params.TypeK = GGMLType.GGML_TYPE_F32;
            _params.TypeV = GGMLType.GGML_TYPE_F32;
            _params.FlashAttention = false;
        }
        _weights = LLamaWeights.LoadFromFile(_params);
    }

    /// <summary>The loaded weights, for LLamaSharp's own executors over the same GGUF (<see cref="LlamaBatchedExecutor"/>).</summary>
    public LLamaWeights Weights => _weights;

    public string ModelPath => _params.ModelPath;

    /// <summary>Which native library LLamaSharp loaded, and llama.cpp's system info.</summary>
    public static string Describe()
    {
        ConfigureOnce();
        try { return (System.Runtime.InteropServices.Marshal.PtrToStringAnsi(NativeApi.llama_print_system_info()) ?? "").Trim(); } catch (Exception e) { return $"(system info unavailable: {e.Message})"; }
    }

    public static IReadOnlyList<string> Log { get { lock (NativeLog) return [.. NativeLog]; } }

    /// <summary>
    /// LLamaSharp's CPU build to load (noavx, avx, avx2, avx512), or null for its own choice. LLamaSharp picks by CPUID,
    /// which the emulation knobs do not change, so an emulated AVX2 tier must name avx2 here to time the llama.cpp that
    /// an AVX2-only machine would run. Set before the first runner.
    /// </summary>
    public static string? Build { get; set; }

    private static void ConfigureOnce()
    {
        if (_configured) return;
        _configured = true;
        if (Build is { } build)
        {
            string folder = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", build);
            string llama = Path.Combine(folder, "libllama.so"), mtmd = Path.Combine(folder, "libmtmd.so");
            if (!File.Exists(llama)) throw new FileNotFoundException($"--llama-build {build}: LLamaSharp's build is not at {folder}.", llama);
            NativeLibraryConfig.All.WithLibrary(llama, mtmd);
        }
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            lock (NativeLog) { if (NativeLog.Count < 2000) NativeLog.Add($"{level}: {message.TrimEnd()}"); }
        });
    }

    /// <summary>Full prefill of <paramref name="tokens"/> in a fresh context; returns the milliseconds to the last token's logits (argmax taken).</summary>
    public double PrefillMs(int[] tokens)
    {
        using var context = _weights.CreateContext(_params);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, i == tokens.Length - 1);
        var clock = Stopwatch.StartNew();
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
        var logits = context.NativeHandle.GetLogitsIth(tokens.Length - 1);
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>
    /// Decode speed: prefill <paramref name="prompt"/>, then <paramref name="tokens"/> single-token decodes of the
    /// greedy choice; returns tokens per second over the decodes alone.
    /// </summary>
    public double DecodeTokensPerSecond(int[] prompt, int tokens)
    {
        using var context = _weights.CreateContext(_params);
        var batch = new LLamaBatch();
        for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        if (context.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed on the prompt");
        int Argmax(int i)
        {
            var logits = context.NativeHandle.GetLogitsIth(i);
            int best = 0;
            for (int j = 1; j < logits.Length; j++) if (logits[j] > logits[best]) best = j;
            return best;
        }
        int token = Argmax(prompt.Length - 1);
        var clock = Stopwatch.StartNew();
        for (int s = 0; s < tokens; s++)
        {
            batch.Clear();
            batch.Add(token, prompt.Length + s, LLamaSeqId.Zero, true);
            if (context.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed on a decode step");
            token = Argmax(0);
        }
        return tokens / clock.Elapsed.TotalSeconds;
    }

    /// <summary>Logits of every token of <paramref name="tokens"/> ([T][vocab]).</summary>
    public float[][] AllLogits(int[] tokens)
    {
        using var context = _weights.CreateContext(_params);
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Length; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, true);
        var result = context.NativeHandle.Decode(batch);
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode failed: {result}");
        return [.. Enumerable.Range(0, tokens.Length).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray())];
    }

    /// <summary>A CPU context for <paramref name="sequences"/> sequences of a prompt and <paramref name="steps"/> decode steps each, one batch per step.</summary>
    public static ModelParams BatchedParams(string modelPath, int sequences, int promptLength, int steps, int threads) => new(modelPath)
    {
        ContextSize = (uint)(sequences * (promptLength + steps + 8)),
        BatchSize = (uint)Math.Max(promptLength, sequences),
        SeqMax = (uint)sequences,
        Threads = threads,
        BatchThreads = threads,
        GpuLayerCount = 0,
    };

    /// <summary>
    /// llama.cpp batched decoding (what LLamaSharp's BatchedExecutor drives): <paramref name="streams"/> sequences share
    /// <paramref name="prompt"/> (prefilled once per sequence), then every step is ONE llama_decode with one token per
    /// sequence (greedy). Returns the aggregate decode tokens/s over <paramref name="tokens"/> steps.
    /// </summary>
    public double BatchedDecodeTokensPerSecond(int[] prompt, int streams, int tokens, int threads)
    {
        var p = BatchedParams(_params.ModelPath, streams, prompt.Length, tokens, threads);
        using var context = _weights.CreateContext(p);
        var batch = new LLamaBatch();
        var next = new int[streams];
        for (int s = 0; s < streams; s++)
        {
            batch.Clear();
            for (int i = 0; i < prompt.Length; i++) batch.Add(prompt[i], i, (LLamaSeqId)s, i == prompt.Length - 1);
            if (context.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed (prefill)");
            next[s] = ArgMax(context.NativeHandle.GetLogitsIth(prompt.Length - 1));
        }
        var clock = Stopwatch.StartNew();
        for (int step = 0; step < tokens; step++)
        {
            batch.Clear();
            for (int s = 0; s < streams; s++) batch.Add(next[s], prompt.Length + step, (LLamaSeqId)s, true);
            if (context.NativeHandle.Decode(batch) != DecodeResult.Ok) throw new InvalidOperationException("llama_decode failed (decode)");
            for (int s = 0; s < streams; s++) next[s] = ArgMax(context.NativeHandle.GetLogitsIth(s));
        }
        return streams * tokens / clock.Elapsed.TotalSeconds;
    }

    private static int ArgMax(Span<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    public void Dispose() => _weights.Dispose();
}
