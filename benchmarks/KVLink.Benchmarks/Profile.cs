using System.Diagnostics;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>--profile: times the pieces of one 1B-shape layer at several token counts, to see where TTFT goes.</summary>
public static class Profile
{
    public static void Run(int threads)
    {
        set_num_threads(threads);
        using var _ = no_grad();
        foreach (var dtype in new[] { ScalarType.BFloat16 })
        {
            var w = randn([8192, 2048]).to(dtype);
            foreach (int t in new[] { 71, 121 })
            {
                using var scope = NewDisposeScope();
                var x = randn([1, t, 2048]).to(dtype);
                double ms = Time(() => nn.functional.linear(x, w));
                Console.WriteLine($"linear {dtype} T={t}: {ms:F2} ms, {2.0 * t * 8192 * 2048 / ms / 1e6:F1} GFLOPS, weights {8192 * 2048 * (dtype == ScalarType.Float32 ? 4 : 2) / ms / 1e6:F1} GB/s");
            }
        }
        foreach (int s in new[] { 1271, 5271 })
            foreach (int t in new[] { 71, 121 })
            {
                using var scope = NewDisposeScope();
                var q = randn([1, 8, 4 * t, 64]).to(ScalarType.BFloat16);
                var k = randn([1, 8, s, 64]).to(ScalarType.BFloat16);
                var v = randn([1, 8, s, 64]).to(ScalarType.BFloat16);
                var mask = ones([4 * t, s], ScalarType.Bool);
                double ms = Time(() => nn.functional.scaled_dot_product_attention(q, k, v, mask));
                double ms2 = Time(() => nn.functional.scaled_dot_product_attention(q, k, v));
                var maskAdd = zeros([4 * t, s], ScalarType.BFloat16);
                double ms3 = Time(() =>
                {
                    using var sc = NewDisposeScope();
                    var scores = matmul(q, k.transpose(-1, -2)).mul_(0.125).add_(maskAdd);
                    var p = scores.softmax(-1, ScalarType.Float32).to(ScalarType.BFloat16);
                    return matmul(p, v).MoveToOuterDisposeScope();
                });
                double ms4 = Time(() =>
                {
                    using var sc = NewDisposeScope();
                    var scores = matmul(q.to(ScalarType.Float32), k.to(ScalarType.Float32).transpose(-1, -2)).mul_(0.125).add_(maskAdd);
                    var p = scores.softmax(-1);
                    return matmul(p, v.to(ScalarType.Float32)).MoveToOuterDisposeScope();
                });
                Console.WriteLine($"sdpa bf16 T={t} S={s}: masked {ms:F2} ms, unmasked {ms2:F2} ms, matmul bf16 {ms3:F2} ms, matmul f32 {ms4:F2} ms");
            }
    }

    private static double Time(Func<Tensor> f)
    {
        for (int i = 0; i < 2; i++) f().Dispose();
        var times = new List<double>();
        for (int i = 0; i < 5; i++)
        {
            var c = Stopwatch.StartNew();
            f().Dispose();
            times.Add(c.Elapsed.TotalMilliseconds);
        }
        return Stats.Median(times);
    }
}

/// <summary>--llama-probe: llama.cpp prefill speed of the 1B shape per GGUF weight type (which type is llama.cpp's best here).</summary>
public static class LlamaProbe
{
    public static void Run(int threads, int tokens)
    {
        string temp = Path.Combine(Path.GetTempPath(), $"kvlink-probe-{Environment.ProcessId}");
        using var m = BenchModel.Create("1b", temp);
        int[] ids = [.. Enumerable.Range(0, tokens).Select(i => 256 + 10 + i % 200)];
        foreach (var type in new[] { GgufWriter.GgmlType.F16, GgufWriter.GgmlType.F32, GgufWriter.GgmlType.BF16 })
        {
            string path = Path.Combine(temp, $"{type}.gguf");
            GgufWriter.Write(path, m.Model, m.Tokenizer, type);
            using (var r = new LlamaCppRunner(path, tokens + 16, threads))
            {
                r.PrefillMs(ids[..64]);
                Console.WriteLine($"llama.cpp {type}: {tokens} tokens in {r.PrefillMs(ids):F0} ms; load {Machine.LoadAverage()}");
            }
            File.Delete(path);
        }
        Directory.Delete(temp, true);
    }
}
