using System.Diagnostics;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>--profile: times the pieces of one 1B-shape layer at several token counts, to see where TTFT goes.</summary>
internal static class Profile
{
    /// <summary>Kernel timings (median of 5 after 2 warm-ups) as markdown table rows.</summary>
    public static List<string> Run(int threads, Action<string>? log = null)
    {
        set_num_threads(threads);
        using var _ = no_grad();
        var rows = new List<string>();
        void Row(string s) { rows.Add(s); log?.Invoke(s); }
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float32 })
        {
            using var outer = NewDisposeScope();
            var w = randn([8192, 2048]).to(dtype);
            int[] ts = dtype == ScalarType.BFloat16 ? [1, 8, 41, 91, 256, 1024] : [1, 91];
            foreach (int t in ts)
            {
                using var scope = NewDisposeScope();
                var x = randn([1, t, 2048]).to(dtype);
                double ms = Time(() => nn.functional.linear(x, w));
                long bytes = 8192L * 2048 * (dtype == ScalarType.Float32 ? 4 : 2);
                Row($"| linear 2048→8192 {dtype} | T = {t} | {ms:F2} ms | {2.0 * t * 8192 * 2048 / ms / 1e6:F0} GFLOPS, weights read at {bytes / ms / 1e6:F1} GB/s |");
            }
        }
        foreach (int s in new[] { 1240, 5240 })
            foreach (int t in new[] { 41, 91 })
            {
                using var scope = NewDisposeScope();
                var q = randn([1, 8, 4 * t, 64]).to(ScalarType.BFloat16);
                var k = randn([1, 8, s, 64]).to(ScalarType.BFloat16);
                var v = randn([1, 8, s, 64]).to(ScalarType.BFloat16);
                var mask = ones([4 * t, s], ScalarType.Bool);
                double ms = Time(() => nn.functional.scaled_dot_product_attention(q, k, v, mask));
                double ms2 = Time(() => nn.functional.scaled_dot_product_attention(q, k, v));
                Row($"| SDPA bf16, 8 kv heads x 4 folded queries | T = {t}, S = {s} | {ms:F2} ms (unmasked {ms2:F2} ms) | {4.0 * 8 * 4 * t * s * 64 / ms / 1e6:F0} GFLOPS |");
            }
        return rows;
    }

    /// <summary>Median of 5 timed calls after 2 warm-ups, in milliseconds (the kernel timings here and in GemmRates).</summary>
    internal static double Time(Func<Tensor> f)
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
internal static class LlamaProbe
{
    public static void Run(int threads, int tokens)
    {
        string temp = Path.Combine(Path.GetTempPath(), $"kvlink-probe-{Environment.ProcessId}");
        using var m = BenchModel.Create("1b", temp);
        int[] ids = [.. Enumerable.Range(0, tokens).Select(i => 256 + 10 + i % 200)];
        Console.WriteLine($"llama.cpp: {LlamaCppRunner.Describe()}");
        foreach (var type in new[] { GgufWriter.GgmlType.F16, GgufWriter.GgmlType.F32, GgufWriter.GgmlType.BF16, GgufWriter.GgmlType.Q8_0 })
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

/// <summary>--profile-link: the 1B link pass alone (T new tokens against S cached positions), wall and CPU time.</summary>
internal static class LinkProfile
{
    /// <summary>
    /// The link pass alone on the 1B shape (random weights) in <paramref name="dtype"/>: T new tokens over S cached positions,
    /// wall and CPU time, median of 3 after a warm-up. T = 62 is KVLink5's computed rows at 10 documents.
    /// </summary>
    public static void Run(int threads, ScalarType dtype = ScalarType.BFloat16)
    {
        set_num_threads(threads);
        string temp = Path.Combine(Path.GetTempPath(), $"kvlink-linkprof-{Environment.ProcessId}");
        using var m = BenchModel.Create("1b", temp, dtype);
        using var _ = no_grad();
        var proc = System.Diagnostics.Process.GetCurrentProcess();
        Console.WriteLine($"link pass, 1B shape, {dtype}, {threads} threads");
        foreach (int s in new[] { 1240, 5240 })
            foreach (int t in new[] { 1, 40, 62, 90 })
            {
                using var scope = NewDisposeScope();
                using var cache = new KVLink.Core.Model.AttentionCache(m.Config, s + 1, dtype);
                var (k, v) = (randn([16, 8, s - t, 64]).to(dtype), randn([16, 8, s - t, 64]).to(dtype));
                cache.Write(0, k, v);
                long[] pos = [.. Enumerable.Range(s - t, t).Select(i => (long)i)];
                var ids = tensor(pos.Select(p => 300L + p % 100).ToArray(), [1, t]);
                var wall = new List<double>(); var cpu = new List<double>();
                for (int r = 0; r < 4; r++)
                {
                    using var inner = NewDisposeScope();
                    proc.Refresh();
                    var c0 = proc.TotalProcessorTime; var w = Stopwatch.StartNew();
                    var step = m.Model.Step(pos, KVLink.Core.Model.AttentionMasks.CausalOverCache(pos, s), cache);
                    m.Model.Forward(ids, step, lastOnly: true).argmax(-1).item<long>();
                    proc.Refresh();
                    if (r > 0) { wall.Add(w.Elapsed.TotalMilliseconds); cpu.Add((proc.TotalProcessorTime - c0).TotalMilliseconds); }
                }
                Console.WriteLine($"link pass S={s} T={t}: wall {Stats.Median(wall):F0} ms, cpu {Stats.Median(cpu):F0} ms; load {Machine.LoadAverage()}");
            }
        Directory.Delete(temp, true);
    }
}
