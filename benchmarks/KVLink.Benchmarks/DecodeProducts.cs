using System.Diagnostics;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// <c>--decode-products</c>: every weight product of one decode step on the 1B shape (16 layers of fused q/k/v, o,
/// fused gate/up and down, then the vocabulary head: 2.47 GB of bf16, more than the caches hold, so the weights come
/// from DRAM as in a real step) at M = 1, 2, 4, 8 and 16 decoding rows, through LibTorch's GEMM and through the decode
/// kernel (<see cref="DecodeGemv"/>) at every vector width this CPU runs (AVX-512, AVX2+FMA, 128-bit: the same body at
/// each width), interleaved per round; median of 9 rounds after one warm-up. Decides from how many rows a step's
/// decoding rows are better served by LibTorch, and what each width gives on one machine.
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
        var kernels = DecodeGemv.Supported.Where(k => k != DecodeKernel.Scalar).ToArray();
        log($"Decode kernel on this CPU: {DecodeGemv.KernelName}");
        log("| decoding rows M | LibTorch (ms per step) | " + string.Join(" | ", kernels.Select(k => $"{DecodeGemv.Name(k)} (ms per step) | its / LibTorch time")) + " |");
        log("|---:|---:|" + string.Concat(kernels.Select(_ => "---:|---:|")));
        foreach (int m in new[] { 1, 2, 4, 8, 16 })
        {
            var xs = shapes.Select(s => s.In).Distinct().ToDictionary(n => n, n => randn([m, 1, n]).to(ScalarType.BFloat16));
            var lib = new List<double>();
            var ker = kernels.Select(_ => new List<double>()).ToArray();
            for (int round = 0; round < 10; round++)
            {
                double a = Step(weights, xs, kernel: null);
                var b = kernels.Select(k => Step(weights, xs, k)).ToArray();
                if (round == 0) continue; // the first round warms every path
                lib.Add(a);
                for (int k = 0; k < kernels.Length; k++) ker[k].Add(b[k]);
            }
            double ml = Stats.Median(lib);
            log($"| {m} | {ml:F0} | " + string.Join(" | ", ker.Select(t => $"{Stats.Median(t):F0} | {Stats.Median(t) / ml:F2}x")) + " |");
        }
    }

    private static unsafe Tensor Kernel(Tensor x, Tensor w)
    {
        fixed (byte* p = w.bytes) return DecodeGemv.Multiply<Bf16Format>(p, null, w.shape[1], x, 0, w.shape[0]);
    }

    /// <summary>One step's products through LibTorch (<paramref name="kernel"/> null) or through the kernel at that width.</summary>
    private static double Step(Tensor[] weights, Dictionary<long, Tensor> xs, DecodeKernel? kernel)
    {
        using var use = kernel is { } k ? DecodeGemv.Use(k) : default;
        var clock = Stopwatch.StartNew();
        foreach (var w in weights)
        {
            var x = xs[w.shape[1]];
            Tensor Full(Tensor t) => nn.functional.linear(t, w);
            if (kernel is not null) Kernel(x, w).Dispose(); // directly: the engine's dispatch stops at DecodeRows.Bf16KernelMaxRows
            else Full(x).Dispose();
        }
        return clock.Elapsed.TotalMilliseconds;
    }
}
