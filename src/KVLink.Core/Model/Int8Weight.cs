using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// A weight-only int8 copy of an [out, in] weight, one scale per output channel (symmetric, max |w| maps to 127), and
/// a matrix-vector product over it for single-row inputs: decoding reads every weight once per token, so halving the
/// bytes read nearly halves its time. The product dequantizes in registers (int8 widened to float, fused multiply-add
/// against the float input) with AVX-512 where the CPU has it, and splits the rows over LibTorch's thread count.
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

    [ThreadStatic] private static bool t_decoding;

    /// <summary>
    /// Marks the current thread as running a decode step until disposed: only then do single-token inputs use int8
    /// weights, so prompts, documents and link passes (whose caches are stored and shared) stay in full precision
    /// even when they happen to be one token long.
    /// </summary>
    public static DecodingScope Decoding()
    {
        t_decoding = true;
        return default;
    }

    /// <summary>Ends a decode step's int8 scope.</summary>
    public readonly struct DecodingScope : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => t_decoding = false;
    }

    /// <summary>Whether <paramref name="x"/> is one row this path serves (a decode step, CPU, a single token, no autograd).</summary>
    public bool Serves(Tensor x) => t_decoding && x.device_type == TorchSharp.DeviceType.CPU && x.numel() == Cols && !(is_grad_enabled() && x.requires_grad);

    /// <summary>y = x W[first..first+count)^T for a single row x ([..., in]); returns [..., count] in x's dtype.</summary>
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
                Run(xp, yp, (int)first, (int)count);
        }
        return y.to(x.dtype).MoveToOuterDisposeScope();
    }

    private unsafe void Run(float* x, float* y, int first, int count)
    {
        int threads = Math.Max(1, Math.Min(get_num_threads(), count / 64));
        if (threads == 1) { Rows4(x, y, first, first, count); return; }
        // Split on multiples of 4 rows.
        int per = (count / threads + 3) & ~3;
        nint xa = (nint)x, ya = (nint)y;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            int start = t * per, n = Math.Min(per, count - start);
            if (n > 0) Rows4((float*)xa, (float*)ya, first, first + start, n);
        });
    }

    /// <summary>Rows [start, start+n) of the weight into y[start-first ...].</summary>
    private unsafe void Rows4(float* x, float* y, int first, int start, int n)
    {
        int cols = (int)Cols;
        fixed (sbyte* q = _q)
        fixed (float* s = _scales)
        {
            int r = start, end = start + n;
            if (Avx512F.IsSupported && cols % 16 == 0)
            {
                for (; r + 4 <= end; r += 4)
                {
                    sbyte* w0 = q + (long)r * cols, w1 = w0 + cols, w2 = w1 + cols, w3 = w2 + cols;
                    Vector512<float> a0 = Vector512<float>.Zero, a1 = a0, a2 = a0, a3 = a0;
                    for (int i = 0; i < cols; i += 16)
                    {
                        var xv = Avx512F.LoadVector512(x + i);
                        a0 = Avx512F.FusedMultiplyAdd(Widen(w0 + i), xv, a0);
                        a1 = Avx512F.FusedMultiplyAdd(Widen(w1 + i), xv, a1);
                        a2 = Avx512F.FusedMultiplyAdd(Widen(w2 + i), xv, a2);
                        a3 = Avx512F.FusedMultiplyAdd(Widen(w3 + i), xv, a3);
                    }
                    y[r - first] = Vector512.Sum(a0) * s[r];
                    y[r + 1 - first] = Vector512.Sum(a1) * s[r + 1];
                    y[r + 2 - first] = Vector512.Sum(a2) * s[r + 2];
                    y[r + 3 - first] = Vector512.Sum(a3) * s[r + 3];
                }
            }
            for (; r < end; r++)
            {
                sbyte* w = q + (long)r * cols;
                float acc = 0;
                for (int i = 0; i < cols; i++) acc += w[i] * x[i];
                y[r - first] = acc * s[r];
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe Vector512<float> Widen(sbyte* p)
        => Avx512F.ConvertToVector512Single(Avx512F.ConvertToVector512Int32(Sse2.LoadVector128(p)));
}
