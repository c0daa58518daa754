using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace KVLink.Core.Model;

/// <summary>The register block of <see cref="DecodeGemv"/>: 4 weight rows times 1, 2 or 4 token rows, at any vector width.</summary>
internal static unsafe partial class DecodeGemv
{
    /// <summary>
    /// How many 4-row blocks ahead the kernels prefetch. A block's 4 rows are read side by side, one vector of each per
    /// step, which the hardware prefetchers follow poorly: without this the int8 product drew ~9 GB/s from DRAM where
    /// LibTorch's bf16 GEMV draws ~14, and with it ~26 (1B shape's lm_head, 2 cores, AVX-512).
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
    /// <paramref name="cols"/> apart; y rows <paramref name="yStride"/> apart): each vector of columns of the 4 rows is
    /// widened once and applied to every token row; columns past the last whole vector take a scalar loop. The width and
    /// the token count are types, so each pair compiles to its own straight loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Block<TWidth, TVec, TFormat, TTokens>(byte* w, long stride, int cols, float* x, float* y, int yStride)
        where TWidth : IVectorWidth<TVec> where TVec : struct where TFormat : IWeightFormat where TTokens : ITokenCount
    {
        byte* w1 = w + stride, w2 = w1 + stride, w3 = w2 + stride, ahead = w + PrefetchBlocks * 4 * stride;
        float* x1 = x + cols, x2 = x1 + cols, x3 = x2 + cols;
        TVec a00 = TWidth.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
             a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        int whole = cols & ~(TWidth.Lanes - 1);
        for (int i = 0; i < whole; i += TWidth.Lanes)
        {
            Prefetch<TWidth, TVec, TFormat>(ahead, i);
            TVec v0 = TFormat.Widen<TWidth, TVec>(w, i), v1 = TFormat.Widen<TWidth, TVec>(w1, i),
                 v2 = TFormat.Widen<TWidth, TVec>(w2, i), v3 = TFormat.Widen<TWidth, TVec>(w3, i);
            Apply<TWidth, TVec>(v0, v1, v2, v3, x + i, ref a00, ref a01, ref a02, ref a03);
            if (TTokens.Count >= 2) Apply<TWidth, TVec>(v0, v1, v2, v3, x1 + i, ref a10, ref a11, ref a12, ref a13);
            if (TTokens.Count == 4)
            {
                Apply<TWidth, TVec>(v0, v1, v2, v3, x2 + i, ref a20, ref a21, ref a22, ref a23);
                Apply<TWidth, TVec>(v0, v1, v2, v3, x3 + i, ref a30, ref a31, ref a32, ref a33);
            }
        }
        Store<TWidth, TVec, TFormat>(y, a00, a01, a02, a03, w, stride, x, whole, cols);
        if (TTokens.Count >= 2) Store<TWidth, TVec, TFormat>(y + yStride, a10, a11, a12, a13, w, stride, x1, whole, cols);
        if (TTokens.Count == 4)
        {
            Store<TWidth, TVec, TFormat>(y + 2 * yStride, a20, a21, a22, a23, w, stride, x2, whole, cols);
            Store<TWidth, TVec, TFormat>(y + 3 * yStride, a30, a31, a32, a33, w, stride, x3, whole, cols);
        }
    }

    /// <summary>One token row's vector of columns (at <paramref name="x"/>) into its 4 accumulators, one per weight row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Apply<TWidth, TVec>(TVec v0, TVec v1, TVec v2, TVec v3, float* x, ref TVec a0, ref TVec a1, ref TVec a2, ref TVec a3)
        where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        var xv = TWidth.Load(x);
        a0 = TWidth.MultiplyAdd(v0, xv, a0);
        a1 = TWidth.MultiplyAdd(v1, xv, a1);
        a2 = TWidth.MultiplyAdd(v2, xv, a2);
        a3 = TWidth.MultiplyAdd(v3, xv, a3);
    }

    /// <summary>
    /// The lines of a later block that this step's columns of 4 rows correspond to: one prefetch per 64 bytes read (x86
    /// only; .NET has no prefetch for ARM64, whose hardware prefetchers are left to it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch<TWidth, TVec, TFormat>(byte* ahead, int i) where TWidth : IVectorWidth<TVec> where TVec : struct where TFormat : IWeightFormat
    {
        if (!Sse.IsSupported) return;
        int step = 4 * TFormat.Size * TWidth.Lanes, at = 4 * TFormat.Size * i; // bytes this step reads, and where it begins
        if (step >= 64)
        {
            for (int k = 0; k < step; k += 64) Sse.Prefetch0(ahead + at + k);
        }
        else if ((at & 63) == 0) Sse.Prefetch0(ahead + at); // steps of 16 or 32 bytes: the step that starts a line
    }

    /// <summary>The 4 accumulators' sums, plus the columns past the last whole vector, into outputs [0, 4) at <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TWidth, TVec, TFormat>(float* y, TVec a0, TVec a1, TVec a2, TVec a3, byte* w, long stride, float* x, int whole, int cols)
        where TWidth : IVectorWidth<TVec> where TVec : struct where TFormat : IWeightFormat
    {
        y[0] = TWidth.Sum(a0);
        y[1] = TWidth.Sum(a1);
        y[2] = TWidth.Sum(a2);
        y[3] = TWidth.Sum(a3);
        if (whole == cols) return;
        for (int j = 0; j < 4; j++) y[j] += Dot<TFormat>(w + j * stride, x, whole, cols);
    }
}
