using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// y = x W^T for a float32 weight at a few dozen token rows: a link pass (KVLink5 over 10 documents computes 62 rows), a
/// question, a short prompt. LibTorch hands float32 products to MKL, which packs the weight into panels on every call; at
/// 62 rows that packing is not amortised (84-108 GFLOP/s against 172 at 1,024 rows on the 2-core machine of
/// docs/benchmarks.md). This kernel reads the weight where it lies, as dot products along the input features: a register
/// block of 3 weight rows times 4 token rows (12 accumulators, 3 weight vectors and one input vector: the 16 registers of
/// AVX2, so nothing spills), each weight row read once from memory and then from cache by every group of 4 token rows.
/// One body serves every vector width (<see cref="IVectorWidth{TVec}"/>), split over LibTorch's OpenMP threads like
/// <see cref="DecodeGemv"/>. Same sums as LibTorch's in another order: float32 rounding apart, the same result.
/// </summary>
internal static unsafe class SmallRowsGemm
{
    /// <summary>The fewest and the most token rows the kernel takes; outside, LibTorch's GEMM is as fast or faster.</summary>
    public const int MinRows = 8, MaxRows = 256;

    /// <summary>
    /// The smallest weight (elements; 1 MB of float32) the kernel takes. It was measured against MKL on the 1B shape's
    /// projections (4-134 MB); on weights of a few hundred KB (the demo model's) the cost of waking the thread team is a
    /// larger share and MKL's small-matrix path was not measured against it, so those stay with LibTorch.
    /// </summary>
    public const long MinWeightElements = 1L << 18;

    /// <summary>
    /// Whether a model of <paramref name="c"/> has a weight of <see cref="MinWeightElements"/> or more: its largest are the
    /// fused gate/up projection and the vocabulary head.
    /// </summary>
    public static bool TakesWeightsOf(LlamaConfig c) => Math.Max(2L * c.IntermediateSize * c.HiddenSize, (long)c.VocabSize * c.HiddenSize) >= MinWeightElements;

    private static readonly KernelSwitch s_switch = new();
    [ThreadStatic] private static long t_products;

    /// <summary>Products this thread has run through the kernel (tests: which path a forward took).</summary>
    public static long ProductsOnThisThread => t_products;

    /// <summary>Whether <paramref name="x"/> ([..., in]) times <paramref name="weight"/> ([out, in]) goes through the kernel.</summary>
    public static bool Serves(Tensor x, Tensor weight)
    {
        if (s_switch.IsOff || weight.dtype != ScalarType.Float32 || x.dtype != ScalarType.Float32 || weight.device_type != TorchSharp.DeviceType.CPU) return false;
        long cols = weight.shape[1], rows = x.numel() / Math.Max(cols, 1);
        // A mismatched input goes to LibTorch, whose linear names the shapes, rather than being read as other rows.
        return x.dim() >= 1 && x.shape[^1] == cols && rows is >= MinRows and <= MaxRows && weight.numel() >= MinWeightElements && DecodeGemv.Kernel != DecodeKernel.Scalar && weight.is_contiguous()
            && weight.numel() * 4 <= int.MaxValue && !(is_grad_enabled() && (x.requires_grad || weight.requires_grad));
    }

    /// <summary>y = x W^T through the kernel where it <see cref="Serves"/>, else LibTorch's <c>linear</c>.</summary>
    public static Tensor Linear(Tensor x, Tensor weight) => Linear(x, weight, 0, weight.shape[0]);

    /// <summary>y = x W[first..first+count)^T (rows of a fused weight) through the kernel where it <see cref="Serves"/>, else LibTorch's <c>linear</c>.</summary>
    public static Tensor Linear(Tensor x, Tensor weight, long first, long count)
    {
        if (Serves(x, weight)) return Multiply(x, weight, first, count);
        if (first == 0 && count == weight.shape[0]) return nn.functional.linear(x, weight);
        using var rows = weight.narrow(0, first, count);
        return nn.functional.linear(x, rows);
    }

    /// <summary>Runs this thread's products through LibTorch until disposed (tests: the reference the kernel must equal).</summary>
    public static KernelSwitch.Scope Off() => s_switch.Off();

    private static Tensor Multiply(Tensor x, Tensor weight, long first, long count)
    {
        t_products++;
        using var scope = NewDisposeScope();
        long cols = weight.shape[1];
        var xc = x.contiguous();
        var y = empty([.. x.shape[..^1], count], ScalarType.Float32);
        fixed (byte* w = weight.bytes)
        fixed (float* xp = MemoryMarshal.Cast<byte, float>(xc.bytes))
        fixed (float* yp = MemoryMarshal.Cast<byte, float>(y.bytes))
        {
            var job = new Job { W = (float*)w + first * cols, X = xp, Y = yp, Tokens = (int)(x.numel() / cols), Cols = (int)cols, Count = (int)count };
            switch (DecodeGemv.Kernel)
            {
                case DecodeKernel.Vector512: Run<Width512, Vector512<float>>(&job); break;
                case DecodeKernel.Vector256: Run<Width256, Vector256<float>>(&job); break;
                default: Run<Width128, Vector128<float>>(&job); break;
            }
        }
        return y.MoveToOuterDisposeScope();
    }

    private struct Job
    {
        public float* W, X, Y;
        public int Tokens, Cols, Count;
    }

    private static void Run<TWidth, TVec>(Job* job) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        int threads = Math.Max(1, Math.Min(get_num_threads(), job->Count / 48));
        OpenMpTeam.RunOrPool(threads, &ThreadShare<TWidth, TVec>, job);
    }

    /// <summary>Thread <paramref name="thread"/> of <paramref name="threads"/>: its share of the weight rows, split on multiples of 3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ThreadShare<TWidth, TVec>(void* state, int thread, int threads) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        var job = (Job*)state;
        int per = (job->Count / threads + 2) / 3 * 3;
        int start = thread * per, n = Math.Min(per, job->Count - start);
        if (n > 0) RowRange<TWidth, TVec>(job, start, n);
    }

    /// <summary>
    /// Columns per pass over rows longer than twice this: a pass's 3 weight rows (12 KB) stay in L1 while the token rows'
    /// same columns stream from L2. Over a whole 8,192-column row, a block's 3 weight rows and 4 token rows (224 KB) came
    /// from L2 on every step, and the down projection ran at 117-127 GFLOP/s where the 2,048-column ones ran at 140-151.
    /// </summary>
    internal const int Piece = 1024;

    /// <summary>
    /// Weight rows [start, start+n) against every token row: blocks of 3 weight rows by 4 token rows (rows longer than
    /// 2 * <see cref="Piece"/> columns in passes of <see cref="Piece"/> columns, each adding to the last), then the weight
    /// rows past the last block of 3 one dot product at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowRange<TWidth, TVec>(Job* job, int start, int n) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        int cols = job->Cols, tokens = job->Tokens, count = job->Count, end = start + n;
        int piece = cols > 2 * Piece ? Piece : cols, whole = tokens & ~3;
        // The last 1-3 token rows: the block of the last 4 rows again, into scratch, of which only those rows are kept. The
        // rows it recomputes get the same arithmetic; single dot products would have one accumulator waiting on each FMA's
        // latency (a quarter of the block's rate or less): at 62 rows the four 1B products took 54.6 ms instead of 63.3
        // (--packed-gemm, emulated AVX2, two runs an hour apart).
        // Serves admits MinRows (8) or more token rows, so there are always 4 to go back to.
        int overlap = whole == tokens ? -1 : tokens - 4;
        float* scratch = stackalloc float[12];
        float* x = job->X, y = job->Y, w = job->W;
        int r = start;
        for (; r + 3 <= end; r += 3)
        {
            float* wr = w + (long)r * cols;
            for (int from = 0; from < cols; from += piece)
            {
                int to = Math.Min(cols, from + piece);
                for (int t = 0; t < whole; t += 4) Block<TWidth, TVec>(wr, cols, x + (long)t * cols, y + (long)t * count + r, count, from, to);
                if (overlap >= 0) Block<TWidth, TVec>(wr, cols, x + (long)overlap * cols, scratch, 3, from, to);
            }
            for (int t = whole; t < tokens; t++)
                for (int j = 0; j < 3; j++) y[(long)t * count + r + j] = scratch[(t - overlap) * 3 + j];
        }
        for (; r < end; r++)
            for (int t = 0; t < tokens; t++) y[(long)t * count + r] = Dot<TWidth, TVec>(w + (long)r * cols, x + (long)t * cols, cols);
    }

    /// <summary>
    /// Columns [<paramref name="from"/>, <paramref name="to"/>) of 3 weight rows (<paramref name="cols"/> apart) times 4 token
    /// rows into 12 outputs (y rows <paramref name="yStride"/> apart): set by the first pass, added to by later ones.
    /// While the accumulators are live nothing is called (the column tails come after their sums): a call clobbers every
    /// vector register, and the JIT then stored all 12 accumulators to the stack on every step (66-74 GFLOP/s at 62 rows
    /// instead of ~105).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Block<TWidth, TVec>(float* w0, int cols, float* x0, float* y, int yStride, int from, int to) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        float* w1 = w0 + cols, w2 = w1 + cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
        TVec a00 = TWidth.Zero, a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00, a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
        int whole = from + ((to - from) & ~(TWidth.Lanes - 1));
        for (int i = from; i < whole; i += TWidth.Lanes)
        {
            TVec v0 = TWidth.Load(w0 + i), v1 = TWidth.Load(w1 + i), v2 = TWidth.Load(w2 + i);
            Apply<TWidth, TVec>(v0, v1, v2, x0 + i, ref a00, ref a01, ref a02);
            Apply<TWidth, TVec>(v0, v1, v2, x1 + i, ref a10, ref a11, ref a12);
            Apply<TWidth, TVec>(v0, v1, v2, x2 + i, ref a20, ref a21, ref a22);
            Apply<TWidth, TVec>(v0, v1, v2, x3 + i, ref a30, ref a31, ref a32);
        }
        bool add = from > 0;
        Store<TWidth, TVec>(y, a00, a01, a02, add);
        Store<TWidth, TVec>(y + yStride, a10, a11, a12, add);
        Store<TWidth, TVec>(y + 2 * yStride, a20, a21, a22, add);
        Store<TWidth, TVec>(y + 3 * yStride, a30, a31, a32, add);
        if (whole == to) return;
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 3; j++) y[t * yStride + j] += Tail(w0 + (long)j * cols, x0 + (long)t * cols, whole, to);
    }

    /// <summary>One token row's vector of columns (at <paramref name="x"/>) into its 3 accumulators, one per weight row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Apply<TWidth, TVec>(TVec v0, TVec v1, TVec v2, float* x, ref TVec a0, ref TVec a1, ref TVec a2) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        var xv = TWidth.Load(x);
        a0 = TWidth.MultiplyAdd(v0, xv, a0);
        a1 = TWidth.MultiplyAdd(v1, xv, a1);
        a2 = TWidth.MultiplyAdd(v2, xv, a2);
    }

    /// <summary>The sums of 3 accumulators into (or, with <paramref name="add"/>, onto) outputs [0, 3) at <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store<TWidth, TVec>(float* y, TVec a0, TVec a1, TVec a2, bool add) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        if (add)
        {
            y[0] += TWidth.Sum(a0);
            y[1] += TWidth.Sum(a1);
            y[2] += TWidth.Sum(a2);
            return;
        }
        y[0] = TWidth.Sum(a0);
        y[1] = TWidth.Sum(a1);
        y[2] = TWidth.Sum(a2);
    }

    /// <summary>One weight row times one token row (the weight rows past the last block of 3): whole vectors, then the tail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot<TWidth, TVec>(float* w, float* x, int cols) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        TVec a = TWidth.Zero;
        int whole = cols & ~(TWidth.Lanes - 1);
        for (int i = 0; i < whole; i += TWidth.Lanes) a = TWidth.MultiplyAdd(TWidth.Load(w + i), TWidth.Load(x + i), a);
        return TWidth.Sum(a) + Tail(w, x, whole, cols);
    }

    /// <summary>Columns [from, to) past the last whole vector, in a scalar loop.</summary>
    private static float Tail(float* w, float* x, int from, int to)
    {
        float acc = 0;
        for (int i = from; i < to; i++) acc += w[i] * x[i];
        return acc;
    }
}
