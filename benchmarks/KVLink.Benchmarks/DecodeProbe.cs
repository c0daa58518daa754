using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Native;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// <c>--decode-probe</c>: decode speed on the 1B shape after the same prompt, greedy, the same number of tokens:
/// ours with bf16 weights through LibTorch's GEMM (as before the decode kernel) and through <see cref="DecodeGemv"/>,
/// ours with int8 weights (<see cref="LlamaForCausalLM.QuantizeInt8ForDecoding"/>), and llama.cpp on a Q8_0 GGUF of the
/// same weights, interleaved per round so load from other jobs touches all alike; and float32 compute on the same
/// weights, exact and with the bf16 copies <c>ComputeDType.Auto</c> keeps for decoding rows.
/// </summary>
internal static class DecodeProbe
{
    public static void Run(int threads, int promptTokens = 256, int tokens = 32, int rounds = 3)
    {
        set_num_threads(threads);
        string temp = Path.Combine(Path.GetTempPath(), $"kvlink-decode-{Environment.ProcessId}");
        using var m = BenchModel.Create("1b", temp);
        var rng = new Random(9);
        int[] prompt = [.. Enumerable.Range(0, promptTokens).Select(_ => rng.Next(300, 20000))];
        string gguf = Path.Combine(temp, "q8_0.gguf");
        var c = Stopwatch.StartNew();
        GgufWriter.Write(gguf, m.Model, m.Tokenizer, GgufWriter.GgmlType.Q8_0);
        Console.WriteLine($"wrote Q8_0 GGUF ({new FileInfo(gguf).Length >> 20} MiB) in {c.Elapsed.TotalSeconds:F0} s");
        c.Restart();
        long int8Bytes = m.Model.QuantizeInt8ForDecoding();
        Console.WriteLine($"int8 copies: {int8Bytes >> 20} MiB in {c.Elapsed.TotalSeconds:F0} s");
        // Float32 compute on the same (bf16-valued) weights: exact (explicit Float32) and with the bf16 copies that
        // ComputeDType.Auto keeps for decoding rows where it picks float32.
        using var f32 = new LlamaForCausalLM(m.Config, ScalarType.Float32);
        using (no_grad())
            foreach (var ((_, dst), (_, src)) in f32.named_parameters().Zip(m.Model.named_parameters())) dst.copy_(src);
        long copyBytes = f32.KeepBf16ForDecoding();
        Console.WriteLine($"float32 model with bf16 decoding copies: {copyBytes >> 20} MiB of copies");
        using var llama = new LlamaCppRunner(gguf, promptTokens + tokens + 16, threads);
        var lt = new List<double>(); var bf = new List<double>(); var i8 = new List<double>(); var pool = new List<double>(); var q8 = new List<double>(); var eng = new List<double>();
        var f32Exact = new List<double>(); var f32Copies = new List<double>();
        using var engine = new KvLinkEngine(m.Model, m.Tokenizer, new KvLinkOptions { LinkTokens = 0, PromptFormat = m.Format, Mode = ContextMode.FullPrefill }, new MemoryKvCacheStore());
        Console.WriteLine($"int8 kernel threads: LibTorch's OpenMP team {(OpenMpTeam.Available ? "found" : "NOT found")}; the pool row is the kernel on .NET's thread pool (before)");
        for (int r = 0; r < rounds; r++)
        {
            lt.Add(Ours(m.Model, prompt, tokens, Weights.LibTorch));
            bf.Add(Ours(m.Model, prompt, tokens, Weights.Bf16));
            eng.Add(ThroughEngine(engine, tokens));
            i8.Add(Ours(m.Model, prompt, tokens, Weights.Int8));
            OpenMpTeam.Enabled = false;
            pool.Add(Ours(m.Model, prompt, tokens, Weights.Int8));
            OpenMpTeam.Enabled = true;
            f32Exact.Add(Ours(f32, prompt, tokens, Weights.LibTorch));
            f32Copies.Add(Ours(f32, prompt, tokens, Weights.Bf16));
            q8.Add(llama.DecodeTokensPerSecond(prompt, tokens));
            Console.WriteLine($"round {r}: ours bf16 through LibTorch {lt[^1]:F2}, through the decode kernel {bf[^1]:F2} (through the engine's scheduler {eng[^1]:F2}), ours int8 {i8[^1]:F2} (on .NET's pool {pool[^1]:F2}), " +
                              $"ours float32 exact {f32Exact[^1]:F2}, float32 with bf16 decoding copies {f32Copies[^1]:F2}, llama.cpp Q8_0 {q8[^1]:F2} tok/s; load {Machine.LoadAverage()}");
        }
        double ml = Stats.Median(lt), mb = Stats.Median(bf), mi = Stats.Median(i8), mp = Stats.Median(pool), mq = Stats.Median(q8), me = Stats.Median(eng);
        Console.WriteLine($"one user's bf16 decode through the engine (scheduler, streaming, sampling) {me:F2} tok/s = {me / mb:F2}x the bare decode loop's {mb:F2}");
        Console.WriteLine($"median of {rounds}: ours bf16 through LibTorch {ml:F2}, through the decode kernel {mb:F2} ({mb / ml:F2}x), ours int8 {mi:F2} ({mi / mb:F2}x bf16; on .NET's pool {mp:F2}, {mp / mb:F2}x), llama.cpp Q8_0 {mq:F2} tok/s (ours int8 / llama.cpp {mi / mq:F2}x), " +
                          $"{tokens} tokens after a {promptTokens}-token prompt, {threads} threads");
        double fe = Stats.Median(f32Exact), fc = Stats.Median(f32Copies);
        Console.WriteLine($"float32 compute: exact (float32 weights through LibTorch) {fe:F2}, with bf16 decoding copies (Auto) {fc:F2} tok/s ({fc / fe:F2}x exact, {fc / mb:F2}x bf16 compute through the kernel)");
        Console.WriteLine($"tier {CpuCapabilities.Current.Tier.Name()} ({CpuCapabilities.Current.Model}); LibTorch ATen {LibTorchCpuInfo.Current.Aten}, oneDNN {LibTorchCpuInfo.Current.OneDnn}; engine decode path {engine.RuntimeInfo.DecodeKernel}");
        Console.WriteLine($"llama.cpp ({LlamaCppRunner.Build ?? "LLamaSharp's choice by CPUID"} build): {LlamaCppRunner.Describe()}");
        Directory.Delete(temp, true);
    }

    /// <summary>One request's decode rate through the engine (full prefill of a short question, then its scheduler's steps): generated tokens after the first over the time after the first.</summary>
    private static double ThroughEngine(KvLinkEngine engine, int tokens)
    {
        var res = engine.GenerateAsync("Which of the documents mentions the city and the year of its founding?", [],
            new KvLinkGenerationOptions { MaxNewTokens = tokens + 1, StopTokenIds = [], Mode = ContextMode.FullPrefill, LinkTokens = 0 }).GetAwaiter().GetResult();
        return (res.Usage.GeneratedTokens - 1) / (res.Timings.Total - res.Timings.TimeToFirstToken).TotalSeconds;
    }

    private enum Weights { LibTorch, Bf16, Int8 }

    private static double Ours(LlamaForCausalLM model, int[] prompt, int tokens, Weights weights)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var cache = new AttentionCache(model.Config, prompt.Length + tokens + 1, model.DType);
        var logits = CausalPrefill.Run(model, cache, prompt);
        long token = logits.argmax(-1).item<long>();
        var clock = Stopwatch.StartNew();
        for (int s = 0; s < tokens; s++)
        {
            using var step = NewDisposeScope();
            long[] pos = [prompt.Length + s];
            var decode = weights == Weights.LibTorch ? default : DecodeRows.All(int8: weights == Weights.Int8);
            var st = model.Step(pos, AttentionMasks.CausalOverCache(pos, (int)pos[0] + 1), cache, decode);
            var next = model.Forward(tensor(new long[] { token }, [1, 1]), st);
            token = next.argmax(-1).item<long>();
        }
        return tokens / clock.Elapsed.TotalSeconds;
    }
}
