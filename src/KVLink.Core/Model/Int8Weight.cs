using TorchSharp;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// A weight-only int8 copy of an [out, in] weight, one scale per output channel (symmetric, max |w| maps to 127), and
/// a product over it for decode steps (one token row, or one per sequence of a batched step): decoding reads every
/// weight once per step, so halving the bytes read nearly halves its time. The product dequantizes in registers
/// (<see cref="DecodeGemv"/> over <see cref="Int8Format"/> rows), the scale applied to each output.
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

    /// <summary>
    /// Quantizes a 2-D CPU weight of any float dtype, in blocks of rows so no full f32 copy is made. Refused where no
    /// vector decode kernel serves this CPU (<see cref="DecodeGemv.RequireVectorPath"/>): the int8 product would then
    /// run scalar loops, far slower than the LibTorch GEMMs it replaces.
    /// </summary>
    /// <exception cref="NotSupportedException">This CPU has no vector decode kernel; the message names the CPU.</exception>
    public static Int8Weight Quantize(Tensor weight)
    {
        DecodeGemv.RequireVectorPath("DecodeWithInt8Weights");
        if (weight.dim() != 2) throw new ArgumentException("An int8 weight must be 2-D [out, in].", nameof(weight));
        if (weight.device_type != TorchSharp.DeviceType.CPU) throw new NotSupportedException("Int8 weights are a CPU decoding path.");
        long rows = weight.shape[0], cols = weight.shape[1];
        var q = GC.AllocateUninitializedArray<sbyte>(checked((int)(rows * cols)), pinned: true);
        var scales = new float[rows];
        using var _ = no_grad();
        const long block = 1024;
        using Scalar int8Max = 127.ToScalar(), tiny = 1e-12.ToScalar(), low = (-127).ToScalar(), high = 127.ToScalar(); // held past the calls (see HeldScalars)
        for (long r = 0; r < rows; r += block)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(block, rows - r);
            var w = weight.narrow(0, r, n).to(ScalarType.Float32);
            var scale = w.abs().amax([1], keepdim: true).div_(int8Max).clamp_min_(tiny);
            var qi = w.div(scale).round_().clamp_(low, high).to(ScalarType.Int8).contiguous();
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

    /// <summary>
    /// y = x W[first..first+count)^T with the leading decoding rows (<see cref="DecodeRows"/>) from the int8 copy and the
    /// rest from <paramref name="full"/> (the full-precision product of the same rows); returns [..., count] in x's dtype.
    /// </summary>
    public Tensor Forward(Tensor x, DecodeRows decode, long first, long count, Func<Tensor, Tensor> full) =>
        decode.Split(x, Cols, count, rows => Multiply(rows, first, count), full);

    /// <summary>y = x W[first..first+count)^T for token rows x ([..., in]); returns [..., count] in x's dtype.</summary>
    public unsafe Tensor Multiply(Tensor x, long first, long count)
    {
        fixed (sbyte* q = _q)
        fixed (float* s = _scales)
            return DecodeGemv.Multiply<Int8Format>((byte*)q, s, Cols, x, first, count);
    }
}
