using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// A weight-only int8 copy of an [out, in] weight, one scale per output channel (symmetric, max |w| maps to 127), and
/// a product over it for decode steps (one token row, or one per sequence of a batched step): decoding reads every
/// weight once per step, so halving the bytes read nearly halves its time. The product dequantizes in registers (int8
/// widened to float, fused multiply-add against the float input) with AVX-512 where the CPU has it, and splits the
/// rows over LibTorch's own OpenMP threads (<see cref="OpenMpTeam"/>), .NET's pool where those are not reachable.
/// </summary>
internal sealed class Int8Weight
{
    private readonly sbyte[] _q;
    private readonly float[] _scales;

    private Int8Weight(sbyte[] q, float[] scales, long rows, long cols) => (_q, _scales, Rows, Cols) = (q, scales, rows, cols);

    /// <summary>Output channels.</summary>
    public long Rows { get; }

    /// <summary>Input features.</summary>
    public long Cols { get; }

    /// <summary>Bytes held (weights and scales).</summary>
    public long Bytes => _q.LongLength + 4L * _scales.Length;

    /// <summary>Quantizes a 2-D CPU weight of any float dtype, in blocks of rows so no full f32 copy is made.</summary>
    public static Int8Weight Quantize(Tensor weight)
    {
        if (weight.dim() != 2) throw new ArgumentException("An int8 weight must be 2-D [out, in].", nameof(weight));
        if (weight.device_type != TorchSharp.DeviceType.CPU) throw new NotSupportedException("Int8 weights are a CPU decoding path.");
        long rows = weight.shape[0], cols = weight.shape[1];
        var q = GC.AllocateUninitializedArray<sbyte>(checked((int)(rows * cols)), pinned: true);
        var scales = new float[rows];
        using var _ = no_grad();
        const long block = 1024;
        for (long r = 0; r < rows; r += block)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(block, rows - r);
            var w = weight.narrow(0, r, n).to(ScalarType.Float32);
            var scale = w.abs().amax([1], keepdim: true).div_(127).clamp_min_(1e-12);
            var qi = w.div(scale).round_().clamp_(-127, 127).to(ScalarType.Int8).contiguous();
            MemoryMarshal.Cast<byte, sbyte>(qi.bytes).CopyTo(q.AsSpan((int)(r * cols), (int)(n * cols)));
            MemoryMarshal.Cast<byte, float>(scale.contiguous().bytes).CopyTo(scales.AsSpan((int)r, (int)n));
        }
        return new Int8Weight(q, scales, rows, cols);
    }

    /// <summary>The dequantized weight (f32), for tests and deviation figures.</summary>
    public Tensor Dequantize()
    {
        using var scope = NewDisposeScope();
        var q = tensor(_q, [Rows, Cols]).to(ScalarType.Float32);
        return q.mul_(tensor(_scales, [Rows, 1])).MoveToOuterDisposeScope();
    }

    [ThreadStatic] private static int t_decodingRows;

    /// <summary>
    /// Marks the current thread as running a decode step until disposed: only then do inputs use int8 weights, and only
    /// their first <paramref name="rows"/> token rows (a batched step puts its decoding sequences' tokens first, then
    /// prompt chunks). Prompts, documents and link passes (whose caches are stored and shared) stay in full precision,
    /// even when they happen to be one token long or share a step with decoding sequences.
    /// </summary>
    public static DecodingScope Decoding(int rows = int.MaxValue)
    {
        t_decodingRows = rows;
        return default;
    }

    /// <summary>Ends a decode step's int8 scope.</summary>
    public readonly struct DecodingScope : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => t_decodingRows = 0;
    }

    /// <summary>
    /// How many leading token rows of <paramref name="x"/> ([..., in]) this path serves: those of a decode step's
    /// decoding sequences, on the CPU, without autograd; 0 for anything else.
    /// </summary>
    public long ServedRows(Tensor x)
    {
        if (t_decodingRows == 0 || x.device_type != TorchSharp.DeviceType.CPU || (is_grad_enabled() && x.requires_grad)) return 0;
        return Math.Min(t_decodingRows, x.numel() / Cols);
    }

    /// <summary>
    /// y = x W[first..first+count)^T with the leading <see cref="ServedRows"/> rows from the int8 copy and the rest from
    /// <paramref name="full"/> (the full-precision product of the same rows); returns [..., count] in x's dtype.
    /// </summary>
    public Tensor Forward(Tensor x, long first, long count, Func<Tensor, Tensor> full)
    {
        long served = ServedRows(x), rows = x.numel() / Cols;
        if (served == 0) return full(x);
        if (served == rows) return Multiply(x, first, count);
        using var flat = x.reshape(rows, Cols);
        using var head = flat.narrow(0, 0, served);
        using var tail = flat.narrow(0, served, rows - served);
        using var a = Multiply(head, first, count);
        using var b = full(tail);
        using var y = cat([a, b], 0);
        return y.reshape([.. x.shape[..^1], count]);
    }

    /// <summary>y = x W[first..first+count)^T for token rows x ([..., in]); returns [..., count] in x's dtype.</summary>
    public Tensor Multiply(Tensor x, long first, long count)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32).contiguous();
        long[] shape = [.. x.shape[..^1], count];
        var y = empty(shape, ScalarType.Float32);
        unsafe
        {
            fixed (float* xp = MemoryMarshal.Cast<byte, float>(xf.bytes))
            fixed (float* yp = MemoryMarshal.Cast<byte, float>(y.bytes))
            fixed (sbyte* q = _q)
            fixed (float* s = _scales)
            {
                var job = new Job { Q = q, Scales = s, X = xp, Y = yp, Tokens = (int)(x.numel() / Cols), Cols = (int)Cols, First = (int)first, Count = (int)count };
                Run(&job);
            }
        }
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>One product: the weight, the token rows and which output rows to compute.</summary>
    private unsafe struct Job
    {
        public sbyte* Q;
        public float* Scales, X, Y;
        public int Tokens, Cols, First, Count;
    }

    private static unsafe void Run(Job* job)
    {
        int threads = Math.Max(1, Math.Min(get_num_threads(), job->Count / 64));
        if (threads == 1) { RowRange(job, job->First, job->Count); return; }
        if (OpenMpTeam.Available) { OpenMpTeam.Run(threads, &ThreadShare, job); return; }
        nint state = (nint)job;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => ThreadShare((void*)state, t, threads));
    }

    /// <summary>Thread <paramref name="thread"/> of <paramref name="threads"/>: its share of the output rows, split on multiples of 4.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: never run its loops unoptimized (tier 0)
    private static unsafe void ThreadShare(void* state, int thread, int threads)
    {
        var job = (Job*)state;
        int per = (job->Count / threads + 3) & ~3;
        int start = thread * per, n = Math.Min(per, job->Count - start);
        if (n > 0) RowRange(job, job->First + start, n);
    }

    /// <summary>
    /// Weight rows [start, start+n) against every token row. Blocks of 4 weight rows are widened once per 16 columns and
    /// applied to 4 token rows at a time (16 accumulators), so a batched step costs little more compute per byte read
    /// than a single token; a block (4 rows of int8) stays in L1 across the token groups, so DRAM reads each weight once.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: never run its loops unoptimized (tier 0)
    private static unsafe void RowRange(Job* job, int start, int n)
    {
        int cols = job->Cols, tokens = job->Tokens, count = job->Count, first = job->First;
        float* x = job->X, y = job->Y, s = job->Scales;
        int r = start, end = start + n;
        if (Avx512F.IsSupported && cols % 16 == 0)
        {
            for (; r + 4 <= end; r += 4)
            {
                sbyte* w = job->Q + (long)r * cols;
                int t = 0;
                for (; t + 4 <= tokens; t += 4) Block4x4(w, cols, x + (long)t * cols, s + r, y + (long)t * count + (r - first), count);
                for (; t < tokens; t++) Block4x1(w, cols, x + (long)t * cols, s + r, y + (long)t * count + (r - first));
            }
        }
        for (; r < end; r++)
        {
            sbyte* w = job->Q + (long)r * cols;
            for (int t = 0; t < tokens; t++)
            {
                float* xt = x + (long)t * cols;
                float acc = 0;
                for (int i = 0; i < cols; i++) acc += w[i] * xt[i];
                y[(long)t * count + (r - first)] = acc * s[r];
            }
        }
    }

    /// <summary>
    /// How many 4-row blocks ahead the kernels prefetch. A block's 4 rows are read side by side, 16 bytes of each per
    /// step, which the hardware prefetchers follow poorly: without this the product drew ~9 GB/s from DRAM where
    /// LibTorch's bf16 GEMV draws ~14, and with it ~26 (1B shape's lm_head, 2 cores).
    /// </summary>
    private const int PrefetchBlocks = 2;

    /// <summary>4 weight rows (from <paramref name="w"/>, <paramref name="cols"/> apart) times one token row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: never run its loops unoptimized (tier 0)
    private static unsafe void Block4x1(sbyte* w, int cols, float* x, float* scale, float* y)
    {
        sbyte* w1 = w + cols, w2 = w1 + cols, w3 = w2 + cols, ahead = w + PrefetchBlocks * 4L * cols;
        Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < cols; i += 16)
        {
            Sse.Prefetch0(ahead + 4 * i); // one line of a later block per 64 bytes read here
            var xv = Avx512F.LoadVector512(x + i);
            a0 = Avx512F.FusedMultiplyAdd(Widen(w + i), xv, a0);
            a1 = Avx512F.FusedMultiplyAdd(Widen(w1 + i), xv, a1);
            a2 = Avx512F.FusedMultiplyAdd(Widen(w2 + i), xv, a2);
            a3 = Avx512F.FusedMultiplyAdd(Widen(w3 + i), xv, a3);
        }
        y[0] = Vector512.Sum(a0) * scale[0];
        y[1] = Vector512.Sum(a1) * scale[1];
        y[2] = Vector512.Sum(a2) * scale[2];
        y[3] = Vector512.Sum(a3) * scale[3];
    }

    /// <summary>4 weight rows times 4 token rows (x rows <paramref name="cols"/> apart; y rows <paramref name="yStride"/> apart).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // a kernel: never run its loops unoptimized (tier 0)
    private static unsafe void Block4x4(sbyte* w, int cols, float* x, float* scale, float* y, int yStride)
    {
        sbyte* w1 = w + cols, w2 = w1 + cols, w3 = w2 + cols;
        float* x1 = x + cols, x2 = x1 + cols, x3 = x2 + cols;
        sbyte* ahead = w + PrefetchBlocks * 4L * cols;
        Vector512<float> a00 = Vector512<float>.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
                         a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        for (int i = 0; i < cols; i += 16)
        {
            Sse.Prefetch0(ahead + 4 * i);
            Vector512<float> v0 = Widen(w + i), v1 = Widen(w1 + i), v2 = Widen(w2 + i), v3 = Widen(w3 + i);
            var xv = Avx512F.LoadVector512(x + i);
            a00 = Avx512F.FusedMultiplyAdd(v0, xv, a00); a01 = Avx512F.FusedMultiplyAdd(v1, xv, a01);
            a02 = Avx512F.FusedMultiplyAdd(v2, xv, a02); a03 = Avx512F.FusedMultiplyAdd(v3, xv, a03);
            xv = Avx512F.LoadVector512(x1 + i);
            a10 = Avx512F.FusedMultiplyAdd(v0, xv, a10); a11 = Avx512F.FusedMultiplyAdd(v1, xv, a11);
            a12 = Avx512F.FusedMultiplyAdd(v2, xv, a12); a13 = Avx512F.FusedMultiplyAdd(v3, xv, a13);
            xv = Avx512F.LoadVector512(x2 + i);
            a20 = Avx512F.FusedMultiplyAdd(v0, xv, a20); a21 = Avx512F.FusedMultiplyAdd(v1, xv, a21);
            a22 = Avx512F.FusedMultiplyAdd(v2, xv, a22); a23 = Avx512F.FusedMultiplyAdd(v3, xv, a23);
            xv = Avx512F.LoadVector512(x3 + i);
            a30 = Avx512F.FusedMultiplyAdd(v0, xv, a30); a31 = Avx512F.FusedMultiplyAdd(v1, xv, a31);
            a32 = Avx512F.FusedMultiplyAdd(v2, xv, a32); a33 = Avx512F.FusedMultiplyAdd(v3, xv, a33);
        }
        Store(y, scale, a00, a01, a02, a03);
        Store(y + yStride, scale, a10, a11, a12, a13);
        Store(y + 2 * yStride, scale, a20, a21, a22, a23);
        Store(y + 3 * yStride, scale, a30, a31, a32, a33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Store(float* y, float* scale, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
    {
        y[0] = Vector512.Sum(a0) * scale[0];
        y[1] = Vector512.Sum(a1) * scale[1];
        y[2] = Vector512.Sum(a2) * scale[2];
        y[3] = Vector512.Sum(a3) * scale[3];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> Widen(sbyte* p)
        => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Sse2.LoadVector128(p)));
}
