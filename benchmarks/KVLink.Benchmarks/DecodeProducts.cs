using System.Diagnostics;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// <c>--decode-products</c>: every weight product of one decode step on the 1B shape (16 layers of fused q/k/v, o,
/// fused gate/up and down, then the vocabulary head: 2.47 GB of bf16, more than the caches hold, so the weights come
/// from DRAM as in a real step) at M = 1, 2, 4, 8 and 16 decoding rows, through LibTorch's GEMM and through the decode
/// kernel (<see cref="DecodeGemv"/>), interleaved per round; median of 9 rounds after one warm-up. Decides from how many rows a step's
/// decoding rows are better served by LibTorch.
/// </summary>
internal static class DecodeProducts
{
    public static void Run(int threads, Action<string> log)
    {
        set_num_threads(threads);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var shapes = new List<(long Out, long In)>();
        for (int l = 0; l < 16; l++) shapes.AddRange([(3072, 2048), (2048, 2048), (16384, 2048), (2048, 8192)]);
        shapes.Add((128256, 2048));
        var weights = shapes.Select((s, i) => randn([s.Out, s.In], generator: new Generator((ulong)i)).div_(40).to(ScalarType.BFloat16)).ToArray();
        log("| decoding rows M | LibTorch (ms per step) | decode kernel (ms per step) | kernel / LibTorch time |");
        log("|---:|---:|---:|---:|");
        foreach (int m in new[] { 1, 2, 4, 8, 16 })
        {
            var xs = shapes.Select(s => s.In).Distinct().ToDictionary(n => n, n => randn([m, 1, n]).to(ScalarType.BFloat16));
            var lib = new List<double>();
            var ker = new List<double>();
            for (int round = 0; round < 10; round++)
            {
                double a = Step(weights, xs, kernel: false), b = Step(weights, xs, kernel: true);
                if (round > 0) { lib.Add(a); ker.Add(b); } // the first round warms both
            }
            double ml = Stats.Median(lib), mk = Stats.Median(ker);
            log($"| {m} | {ml:F0} | {mk:F0} | {mk / ml:F2}x |");
        }
    }

    private static unsafe Tensor Kernel(Tensor x, Tensor w)
    {
        fixed (byte* p = w.bytes) return DecodeGemv.Multiply<Bf16Format>(p, null, w.shape[1], x, 0, w.shape[0]);
    }

    private static double Step(Tensor[] weights, Dictionary<long, Tensor> xs, bool kernel)
    {
        var clock = Stopwatch.StartNew();
        foreach (var w in weights)
        {
            var x = xs[w.shape[1]];
            Tensor Full(Tensor t) => nn.functional.linear(t, w);
            if (kernel) Kernel(x, w).Dispose(); // directly: the engine's dispatch stops at DecodeRows.Bf16KernelMaxRows
            else Full(x).Dispose();
        }
        return clock.Elapsed.TotalMilliseconds;
    }
}
