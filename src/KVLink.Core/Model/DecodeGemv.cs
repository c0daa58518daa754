using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>How a weight row is stored for <see cref="DecodeGemv"/>: widened to float in registers, 16 columns at a time.</summary>
internal unsafe interface IWeightFormat
{
    /// <summary>Bytes per weight.</summary>
    static abstract int Size { get; }

    /// <summary>Columns [i, i+16) of the row at <paramref name="row"/>, as floats.</summary>
    static abstract Vector512<float> Widen(byte* row, int i);

    /// <summary>Column <paramref name="i"/> of the row at <paramref name="row"/> (the scalar tail).</summary>
    static abstract float At(byte* row, int i);
}

/// <summary>int8 weights, one scale per output row.</summary>
internal readonly unsafe struct Int8Format : IWeightFormat
{
    public static int Size => 1;
    public static Vector512<float> Widen(byte* row, int i) => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Sse2.LoadVector128((sbyte*)row + i)));
    public static float At(byte* row, int i) => ((sbyte*)row)[i];
}

/// <summary>bf16 weights (the upper half of a float: widening is a 16-bit shift), read in place from the model's tensor.</summary>
internal readonly unsafe struct Bf16Format : IWeightFormat
{
    public static int Size => 2;
    public static Vector512<float> Widen(byte* row, int i) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Avx.LoadVector256((ushort*)row + i)), 16).AsSingle();
    public static float At(byte* row, int i) => BitConverter.Int32BitsToSingle(((ushort*)row)[i] << 16);
}

/// <summary>
/// The product of decoding rows (a few token rows) with a weight read once from memory, which is what bounds decoding:
/// LibTorch's bf16 GEMM reads a weight at ~12-15 GB/s at one row on the 2-core machine of docs/benchmarks.md, this
/// kernel at ~20-35. Rows are widened to float in registers and multiplied with the float input (fused multiply-add), with
/// AVX-512 where the CPU has it, split over LibTorch's own OpenMP threads (<see cref="OpenMpTeam"/>), .NET's pool where
/// those are not reachable. Accumulates in float32, as LibTorch's bf16 GEMM does; only the order of the sums differs.
/// </summary>
internal static unsafe class DecodeGemv
{
    [ThreadStatic] private static long t_products;

    /// <summary>Products this thread has run through the kernel (tests: which path a forward took).</summary>
    public static long ProductsOnThisThread => t_products;

    /// <summary>Whether the vector kernel runs for rows of <paramref name="cols"/> columns (else a scalar loop does).</summary>
    public static bool Vectorized(long cols) => Avx512F.IsSupported && cols % 16 == 0;

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
            var job = new Job { W = weight, Scales = scales, X = xp, Y = yp, Tokens = (int)(x.numel() / cols), Cols = (int)cols, First = (int)first, Count = (int)count };
            Run<TFormat>(&job);
        }
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>One product: the weight, the token rows and which output rows to compute.</summary>
    private struct Job
    {
        public byte* W;
        public float* Scales, X, Y;
        public int Tokens, Cols, First, Count;
    }

    private static void Run<TFormat>(Job* job) where TFormat : IWeightFormat
    {
        int threads = Math.Max(1, Math.Min(get_num_threads(), job->Count / 64));
        if (threads == 1) { RowRange<TFormat>(job, job->First, job->Count); return; }
        if (OpenMpTeam.Available) { OpenMpTeam.Run(threads, &ThreadShare<TFormat>, job); return; }
        nint state = (nint)job;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => ThreadShare<TFormat>((void*)state, t, threads));
    }

    /// <summary>Thread <paramref name="thread"/> of <paramref name="threads"/>: its share of the output rows, split on multiples of 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: never run its loops unoptimized (tier 0)
    private static void ThreadShare<TFormat>(void* state, int thread, int threads) where TFormat : IWeightFormat
    {
        var job = (Job*)state;
        int per = (job->Count / threads + 3) & ~3;
        int start = thread * per, n = Math.Min(per, job->Count - start);
        if (n > 0) RowRange<TFormat>(job, job->First + start, n);
    }

    /// <summary>
    /// Weight rows [start, start+n) against every token row. Blocks of 4 weight rows are widened once per 16 columns and
    /// applied to 4 token rows at a time (16 accumulators; then 2, then 1 for the rest), so a batched step costs little more compute per byte read
    /// than a single token; a block stays in L1 across the token groups, so DRAM reads each weight once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowRange<TFormat>(Job* job, int start, int n) where TFormat : IWeightFormat
    {
        int cols = job->Cols, tokens = job->Tokens, count = job->Count, first = job->First;
        long stride = (long)cols * TFormat.Size;
        float* x = job->X, y = job->Y, s = job->Scales;
        int r = start, end = start + n;
        if (Vectorized(cols))
        {
            for (; r + 4 <= end; r += 4)
            {
                byte* w = job->W + r * stride;
                int t = 0;
                for (; t + 4 <= tokens; t += 4) Block<TFormat, Four>(w, stride, cols, x + (long)t * cols, y + (long)t * count + (r - first), count);
                if (t + 2 <= tokens) { Block<TFormat, Two>(w, stride, cols, x + (long)t * cols, y + (long)t * count + (r - first), count); t += 2; }
                if (t < tokens) Block<TFormat, One>(w, stride, cols, x + (long)t * cols, y + (long)t * count + (r - first), count);
                if (s != null) Scale(y + (r - first), count, tokens, s + r);
            }
        }
        for (; r < end; r++)
        {
            byte* w = job->W + r * stride;
            for (int t = 0; t < tokens; t++)
            {
                float* xt = x + (long)t * cols;
                float acc = 0;
                for (int i = 0; i < cols; i++) acc += TFormat.At(w, i) * xt[i];
                y[(long)t * count + (r - first)] = s == null ? acc : acc * s[r];
            }
        }
    }

    /// <summary>Multiplies outputs [0, 4) of every token row (<paramref name="yStride"/> apart) by the 4 rows' scales.</summary>
    private static void Scale(float* y, int yStride, int tokens, float* scale)
    {
        for (int t = 0; t < tokens; t++, y += yStride)
            for (int j = 0; j < 4; j++) y[j] *= scale[j];
    }

    /// <summary>
    /// How many 4-row blocks ahead the kernels prefetch. A block's 4 rows are read side by side, 16 weights of each per
    /// step, which the hardware prefetchers follow poorly: without this the int8 product drew ~9 GB/s from DRAM where
    /// LibTorch's bf16 GEMV draws ~14, and with it ~26 (1B shape's lm_head, 2 cores).
    /// </summary>
    private const int PrefetchBlocks = 2;

    /// <summary>How many token rows a register block serves: 1, 2 or 4.</summary>
    private interface ITokenCount
    {
        static abstract int Count { get; }
    }

    private readonly struct One : ITokenCount { public static int Count => 1; }
    private readonly struct Two : ITokenCount { public static int Count => 2; }
    private readonly struct Four : ITokenCount { public static int Count => 4; }

    /// <summary>
    /// 4 weight rows (<paramref name="stride"/> bytes apart) times <typeparamref name="TTokens"/> token rows (x rows
    /// <paramref name="cols"/> apart; y rows <paramref name="yStride"/> apart): each 16 columns of the 4 rows are widened
    /// once and applied to every token row. The token count is a type, so each size compiles to its own straight loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block<TFormat, TTokens>(byte* w, long stride, int cols, float* x, float* y, int yStride)
        where TFormat : IWeightFormat where TTokens : ITokenCount
    {
        byte* w1 = w + stride, w2 = w1 + stride, w3 = w2 + stride, ahead = w + PrefetchBlocks * 4 * stride;
        float* x1 = x + cols, x2 = x1 + cols, x3 = x2 + cols;
        Vector512<float> a00 = Vector512<float>.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
                         a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        for (int i = 0; i < cols; i += 16)
        {
            Prefetch<TFormat>(ahead, i);
            Vector512<float> v0 = TFormat.Widen(w, i), v1 = TFormat.Widen(w1, i), v2 = TFormat.Widen(w2, i), v3 = TFormat.Widen(w3, i);
            Fma(v0, v1, v2, v3, x + i, ref a00, ref a01, ref a02, ref a03);
            if (TTokens.Count >= 2) Fma(v0, v1, v2, v3, x1 + i, ref a10, ref a11, ref a12, ref a13);
            if (TTokens.Count == 4)
            {
                Fma(v0, v1, v2, v3, x2 + i, ref a20, ref a21, ref a22, ref a23);
                Fma(v0, v1, v2, v3, x3 + i, ref a30, ref a31, ref a32, ref a33);
            }
        }
        Store(y, a00, a01, a02, a03);
        if (TTokens.Count >= 2) Store(y + yStride, a10, a11, a12, a13);
        if (TTokens.Count == 4)
        {
            Store(y + 2 * yStride, a20, a21, a22, a23);
            Store(y + 3 * yStride, a30, a31, a32, a33);
        }
    }

    /// <summary>One token row's 16 columns (at <paramref name="x"/>) into its 4 accumulators, one per weight row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fma(Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3, float* x,
        ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2, ref Vector512<float> a3)
    {
        var xv = Avx512F.LoadVector512(x);
        a0 = Avx512F.FusedMultiplyAdd(v0, xv, a0);
        a1 = Avx512F.FusedMultiplyAdd(v1, xv, a1);
        a2 = Avx512F.FusedMultiplyAdd(v2, xv, a2);
        a3 = Avx512F.FusedMultiplyAdd(v3, xv, a3);
    }

    /// <summary>The lines of a later block that this step's 16 columns of 4 rows correspond to (one per 64 bytes read).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch<TFormat>(byte* ahead, int i) where TFormat : IWeightFormat
    {
        Sse.Prefetch0(ahead + 4 * TFormat.Size * i);
        if (TFormat.Size == 2) Sse.Prefetch0(ahead + 4 * TFormat.Size * i + 64);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* y, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        y[0] = Vector512.Sum(a0);
        y[1] = Vector512.Sum(a1);
        y[2] = Vector512.Sum(a2);
        y[3] = Vector512.Sum(a3);
    }
}
