using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// --packed-gemm: float32 products of the 1B shape's projections at prompt-sized row counts, LibTorch's <c>linear</c>
/// (MKL sgemm, which packs the weight panel on every call) against MKL's packed API (<c>cblas_sgemm_pack</c> once,
/// <c>cblas_sgemm_compute</c> per call), both exported by libtorch_cpu.so, and against the engine's kernel for a few dozen
/// rows (<see cref="KVLink.Core.Model.SmallRowsGemm"/>, where its row range takes it). Medians of 7 interleaved rounds after a
/// warm-up round. A probe for
/// issue #24's floor: at 62 rows LibTorch's float32 GEMMs run at about 100 GFLOP/s against 170 at 1024.
/// </summary>
internal static unsafe class PackedGemm
{
    private const int RowMajor = 101, NoTrans = 111, Trans = 112, BMatrix = 162, Packed = 151;

    public static void Run(int threads)
    {
        set_num_threads(threads);
        if (!NativeLibrary.TryLoad("libtorch_cpu.so", out var lib)
            || !NativeLibrary.TryGetExport(lib, "cblas_sgemm_pack_get_size", out var getSize)
            || !NativeLibrary.TryGetExport(lib, "cblas_sgemm_pack", out var pack)
            || !NativeLibrary.TryGetExport(lib, "cblas_sgemm_compute", out var compute))
        {
            Console.WriteLine("libtorch_cpu.so exports no MKL packed GEMM");
            return;
        }
        var sizeOf = (delegate* unmanaged<int, int, int, int, nuint>)getSize; // (identifier, m, n, k)
        var packB = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, void>)pack;
        var run = (delegate* unmanaged<int, int, int, int, int, int, float*, int, float*, int, float, float*, int, void>)compute;
        using var _ = no_grad();
        (string Name, int N, int K)[] shapes = [("qkv", 3072, 2048), ("o", 2048, 2048), ("gate_up", 16384, 2048), ("down", 2048, 8192)];
        Console.WriteLine($"| rows | product | LibTorch linear | MKL packed | packed / linear time | SmallRowsGemm ({KVLink.Core.Model.DecodeGemv.KernelName}) | ours / linear time |");
        Console.WriteLine("|---:|---|---:|---:|---:|---:|---:|");
        foreach (int m in new[] { 8, 16, 32, 62, 128, 256 })
            foreach (var (name, n, k) in shapes)
            {
                using var scope = NewDisposeScope();
                var w = randn([n, k]);
                var x = randn([m, k]);
                var y = empty([m, n]);
                // B = W^T (K x N) from W stored N x K row-major: op(B) = transpose of a row-major N x K with ldb = K.
                nuint bytes = sizeOf(BMatrix, m, n, k);
                var buffer = (float*)NativeMemory.AlignedAlloc(bytes, 64);
                try
                {
                    packB(RowMajor, BMatrix, Trans, m, n, k, 1f, Ptr(w), k, buffer);
                    bool ours = KVLink.Core.Model.SmallRowsGemm.Serves(x, w);
                    // Interleaved rounds, so a slower minute of a shared machine hits every product alike.
                    var (linear, packed, kernel) = Interleaved(() => nn.functional.linear(x, w).Dispose(),
                        () => run(RowMajor, NoTrans, Packed, m, n, k, Ptr(x), k, buffer, k, 0f, Ptr(y), n),
                        ours ? () => KVLink.Core.Model.SmallRowsGemm.Linear(x, w).Dispose() : null);
                    float diff = (nn.functional.linear(x, w) - y).abs().max().item<float>();
                    if (diff > 1e-2f) throw new InvalidOperationException($"packed result differs by {diff}");
                    double gf(double ms) => 2.0 * m * n * k / ms / 1e6;
                    string kernelCells = ours ? $"{kernel:F2} ms ({gf(kernel):F0} GFLOP/s) | {kernel / linear:F2}" : "– | –";
                    Console.WriteLine($"| {m} | {name} {n}x{k} | {linear:F2} ms ({gf(linear):F0} GFLOP/s) | {packed:F2} ms ({gf(packed):F0} GFLOP/s) | {packed / linear:F2} | {kernelCells} |");
                }
                finally { NativeMemory.AlignedFree(buffer); }
            }
        Console.WriteLine($"load {Machine.LoadAverage()}");
    }

    /// <summary>Address of a contiguous CPU tensor's first element (its storage lives as long as the tensor).</summary>
    private static float* Ptr(Tensor t)
    {
        fixed (byte* p = &MemoryMarshal.GetReference(t.bytes)) return (float*)p;
    }

    /// <summary>Medians of 7 interleaved rounds (after a warm-up round) of the products; <paramref name="c"/> may be null.</summary>
    private static (double A, double B, double C) Interleaved(Action a, Action b, Action? c)
    {
        var times = new[] { new List<double>(), new List<double>(), new List<double>() };
        for (int round = 0; round < 8; round++)
        {
            foreach (var (f, i) in new[] { (a, 0), (b, 1), (c, 2) })
            {
                if (f is null) continue;
                var sw = System.Diagnostics.Stopwatch.StartNew();
                f();
                if (round > 0) times[i].Add(sw.Elapsed.TotalMilliseconds);
            }
        }
        return (Stats.Median(times[0]), Stats.Median(times[1]), c is null ? 0 : Stats.Median(times[2]));
    }
}
