using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// The product of decoding rows (a few token rows) with a weight read once from memory, which is what bounds decoding:
/// LibTorch's bf16 GEMM reads a weight at ~12-15 GB/s at one row on the 2-core machine of docs/benchmarks.md, this
/// kernel at ~20-35. Rows are widened to float in registers and multiplied with the float input (fused multiply-add) at
/// the widest vector width this CPU accelerates (<see cref="Kernel"/>: one body for AVX-512, AVX2+FMA and ARM64
/// AdvSimd, <see cref="IVectorWidth{TVec}"/>), split over LibTorch's own OpenMP threads (<see cref="OpenMpTeam"/>),
/// .NET's pool where those are not reachable. Accumulates in float32, as LibTorch's bf16 GEMM does; only the order of
/// the sums differs.
/// </summary>
internal static unsafe partial class DecodeGemv
{
    [ThreadStatic] private static long t_products;

    /// <summary>Products this thread has run through the kernel (tests: which path a forward took).</summary>
    public static long ProductsOnThisThread => t_products;

    /// <summary>
    /// y = x W[first..first+count)^T for token rows x ([..., cols], any float dtype) and a weight of <typeparamref name="TFormat"/>
    /// rows at <paramref name="weight"/> (<paramref name="scales"/>: one per weight row, or null); returns [..., count] in x's dtype.
    /// </summary>
    public static Tensor Multiply<TFormat>(byte* weight, float* scales, long cols, Tensor x, long first, long count) where TFormat : IWeightFormat
    {
        t_products++;
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32).contiguous();
        var y = empty([.. x.shape[..^1], count], ScalarType.Float32);
        fixed (float* xp = MemoryMarshal.Cast<byte, float>(xf.bytes))
        fixed (float* yp = MemoryMarshal.Cast<byte, float>(y.bytes))
        {
            var kernel = Kernel;
            var job = new Job { W = weight, Scales = scales, X = xp, Y = yp, Tokens = (int)(x.numel() / cols), Cols = (int)cols, First = (int)first, Count = (int)count, Vector = kernel != DecodeKernel.Scalar };
            switch (kernel)
            {
                case DecodeKernel.Vector512: Run<Width512, Vector512<float>, TFormat>(&job); break;
                case DecodeKernel.Vector256: Run<Width256, Vector256<float>, TFormat>(&job); break;
                default: Run<Width128, Vector128<float>, TFormat>(&job); break; // Vector128, or the scalar loops alone
            }
        }
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>One product: the weight, the token rows, which output rows to compute and whether vectors serve it.</summary>
    private struct Job
    {
        public byte* W;
        public float* Scales, X, Y;
        public int Tokens, Cols, First, Count;
        public bool Vector;
    }

    private static void Run<TWidth, TVec, TFormat>(Job* job) where TWidth : IVectorWidth<TVec> where TVec : struct where TFormat : IWeightFormat
    {
        int threads = Math.Max(1, Math.Min(get_num_threads(), job->Count / 64));
        OpenMpTeam.RunOrPool(threads, &ThreadShare<TWidth, TVec, TFormat>, job);
    }

    /// <summary>Thread <paramref name="thread"/> of <paramref name="threads"/>: its share of the output rows, split on multiples of 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: never run its loops unoptimized (tier 0)
    private static void ThreadShare<TWidth, TVec, TFormat>(void* state, int thread, int threads) where TWidth : IVectorWidth<TVec> where TVec : struct where TFormat : IWeightFormat
    {
        var job = (Job*)state;
        int per = (job->Count / threads + 3) & ~3;
        int start = thread * per, n = Math.Min(per, job->Count - start);
        if (n > 0) RowRange<TWidth, TVec, TFormat>(job, job->First + start, n);
    }

    /// <summary>
    /// Weight rows [start, start+n) against every token row. Blocks of 4 weight rows are widened once per vector of columns
    /// and applied to 4 token rows at a time (16 accumulators; then 2, then 1 for the rest), so a batched step costs little
    /// more compute per byte read than a single token; a block stays in L1 across the token groups, so DRAM reads each
    /// weight once. Rows past the last block of 4 (and every row where no vector width is accelerated) take a scalar loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowRange<TWidth, TVec, TFormat>(Job* job, int start, int n) where TWidth : IVectorWidth<TVec> where TVec : struct where TFormat : IWeightFormat
    {
        int cols = job->Cols, tokens = job->Tokens, count = job->Count, first = job->First;
        long stride = (long)cols * TFormat.Size;
        float* x = job->X, y = job->Y, s = job->Scales;
        int r = start, end = start + n;
        if (job->Vector)
        {
            for (; r + 4 <= end; r += 4)
            {
                byte* w = job->W + r * stride;
                float* yr = y + (r - first);
                int t = 0;
                for (; t + 4 <= tokens; t += 4) Block<TWidth, TVec, TFormat, Four>(w, stride, cols, x + (long)t * cols, yr + (long)t * count, count);
                if (t + 2 <= tokens) { Block<TWidth, TVec, TFormat, Two>(w, stride, cols, x + (long)t * cols, yr + (long)t * count, count); t += 2; }
                if (t < tokens) Block<TWidth, TVec, TFormat, One>(w, stride, cols, x + (long)t * cols, yr + (long)t * count, count);
                if (s != null) Scale(yr, count, tokens, s + r);
            }
        }
        for (; r < end; r++)
        {
            byte* w = job->W + r * stride;
            for (int t = 0; t < tokens; t++)
            {
                float acc = Dot<TFormat>(w, x + (long)t * cols, 0, cols);
                y[(long)t * count + (r - first)] = s == null ? acc : acc * s[r];
            }
        }
    }

    /// <summary>Columns [from, to) of one weight row times one token row, in a scalar loop (a multiply, then an add).</summary>
    private static float Dot<TFormat>(byte* w, float* x, int from, int to) where TFormat : IWeightFormat
    {
        float acc = 0;
        for (int i = from; i < to; i++) acc += TFormat.At(w, i) * x[i];
        return acc;
    }

    /// <summary>Multiplies outputs [0, 4) of every token row (<paramref name="yStride"/> apart) by the 4 rows' scales.</summary>
    private static void Scale(float* y, int yStride, int tokens, float* scale)
    {
        for (int t = 0; t < tokens; t++, y += yStride)
            for (int j = 0; j < 4; j++) y[j] *= scale[j];
    }
}
