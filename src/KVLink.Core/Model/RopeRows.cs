using System.Numerics;
using System.Runtime.Intrinsics;

namespace KVLink.Core.Model;

/// <summary>
/// The row kernel of <see cref="RopeRerotation.ShiftInPlace"/>: one key row of d values (bf16 or float32) rotated in
/// place by the fp32 angles at <c>cos[at..]</c>/<c>sin[at..]</c>, as
/// <c>x * cos + rotate_half(x) * sin</c> with <c>rotate_half(x) = (-x2, x1)</c>: the same two products and one sum per
/// element, in fp32, as the tensor path (<see cref="RotaryEmbedding.Apply"/>), so the results are bit for bit LibTorch's.
/// </summary>
/// <remarks>
/// One body per width, chosen at run time: 512-bit vectors where AVX-512 is accelerated, otherwise
/// <see cref="Vector{T}"/> (256-bit with AVX2, 128-bit with SSE or ARM64 AdvSimd), then a scalar tail. Products and
/// sums stay separate operations (never fused into an FMA), which is what keeps them equal to LibTorch's.
/// </remarks>
internal static unsafe class RopeRows
{
    /// <summary>Rotates a bf16 row (round-to-nearest-even back to bf16, NaN kept quiet, as LibTorch converts).</summary>
    public static void Rotate(ushort* x, int d, float[] cos, float[] sin, int at)
    {
        int half = d / 2, i = 0;
        fixed (float* c = &cos[at], s = &sin[at])
        {
            if (Vector512.IsHardwareAccelerated)
                for (; i + Vector512<float>.Count <= half; i += Vector512<float>.Count)
                {
                    var x1 = Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load(x + i).ToVector512Unsafe()), 16).AsSingle();
                    var x2 = Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load(x + i + half).ToVector512Unsafe()), 16).AsSingle();
                    var lo = x1 * Vector512.Load(c + i) + (-x2) * Vector512.Load(s + i);
                    var hi = x2 * Vector512.Load(c + i + half) + x1 * Vector512.Load(s + i + half);
                    Vector512.Narrow(ToBf16Bits(lo), Vector512<uint>.Zero).GetLower().Store(x + i);
                    Vector512.Narrow(ToBf16Bits(hi), Vector512<uint>.Zero).GetLower().Store(x + i + half);
                }
            else if (Vector.IsHardwareAccelerated)
                // Vector<ushort> holds twice as many lanes as Vector<float>: each load widens to two float vectors.
                for (; i + Vector<ushort>.Count <= half; i += Vector<ushort>.Count)
                {
                    Vector.Widen(Vector.Load(x + i), out Vector<uint> a1, out Vector<uint> b1);
                    Vector.Widen(Vector.Load(x + i + half), out Vector<uint> a2, out Vector<uint> b2);
                    int n = Vector<float>.Count;
                    var (lo0, hi0) = Turn(Vector.AsVectorSingle(a1 << 16), Vector.AsVectorSingle(a2 << 16), c + i, s + i, c + i + half, s + i + half);
                    var (lo1, hi1) = Turn(Vector.AsVectorSingle(b1 << 16), Vector.AsVectorSingle(b2 << 16), c + i + n, s + i + n, c + i + half + n, s + i + half + n);
                    Vector.Narrow(ToBf16Bits(lo0), ToBf16Bits(lo1)).Store(x + i);
                    Vector.Narrow(ToBf16Bits(hi0), ToBf16Bits(hi1)).Store(x + i + half);
                }
        }
        for (; i < half; i++)
        {
            float x1 = BitConverter.Int32BitsToSingle(x[i] << 16), x2 = BitConverter.Int32BitsToSingle(x[i + half] << 16);
            float lo = x1 * cos[at + i] + (-x2) * sin[at + i];
            float hi = x2 * cos[at + i + half] + x1 * sin[at + i + half];
            x[i] = ToBFloat16(lo);
            x[i + half] = ToBFloat16(hi);
        }
    }

    /// <summary>Rotates a float32 row.</summary>
    public static void Rotate(float* x, int d, float[] cos, float[] sin, int at)
    {
        int half = d / 2, i = 0;
        fixed (float* c = &cos[at], s = &sin[at])
        {
            if (Vector512.IsHardwareAccelerated)
                for (; i + Vector512<float>.Count <= half; i += Vector512<float>.Count)
                {
                    var x1 = Vector512.Load(x + i);
                    var x2 = Vector512.Load(x + i + half);
                    (x1 * Vector512.Load(c + i) + (-x2) * Vector512.Load(s + i)).Store(x + i);
                    (x2 * Vector512.Load(c + i + half) + x1 * Vector512.Load(s + i + half)).Store(x + i + half);
                }
            else if (Vector.IsHardwareAccelerated)
                for (; i + Vector<float>.Count <= half; i += Vector<float>.Count)
                {
                    var (lo, hi) = Turn(Vector.Load(x + i), Vector.Load(x + i + half), c + i, s + i, c + i + half, s + i + half);
                    lo.Store(x + i);
                    hi.Store(x + i + half);
                }
        }
        for (; i < half; i++)
        {
            float x1 = x[i], x2 = x[i + half];
            x[i] = x1 * cos[at + i] + (-x2) * sin[at + i];
            x[i + half] = x2 * cos[at + i + half] + x1 * sin[at + i + half];
        }
    }

    /// <summary>The rotated first and second halves of one vector's worth of lanes.</summary>
    private static (Vector<float> Lo, Vector<float> Hi) Turn(Vector<float> x1, Vector<float> x2, float* cosLo, float* sinLo, float* cosHi, float* sinHi) =>
        (x1 * Vector.Load(cosLo) + (-x2) * Vector.Load(sinLo), x2 * Vector.Load(cosHi) + x1 * Vector.Load(sinHi));

    /// <summary>fp32 lanes to bf16 bit patterns in the low 16 bits (round-to-nearest-even, NaN quiet).</summary>
    private static Vector512<uint> ToBf16Bits(Vector512<float> f)
    {
        var u = f.AsUInt32();
        var rounded = Vector512.ShiftRightLogical(u + Vector512.Create(0x7FFFu) + (Vector512.ShiftRightLogical(u, 16) & Vector512<uint>.One), 16);
        return Vector512.ConditionalSelect(~Vector512.Equals(f, f).AsUInt32(), Vector512.Create(0x7FC0u), rounded);
    }

    /// <inheritdoc cref="ToBf16Bits(Vector512{float})"/>
    private static Vector<uint> ToBf16Bits(Vector<float> f)
    {
        var u = Vector.AsVectorUInt32(f);
        var rounded = (u + new Vector<uint>(0x7FFFu) + ((u >> 16) & Vector<uint>.One)) >> 16;
        return Vector.ConditionalSelect(~Vector.AsVectorUInt32(Vector.Equals(f, f)), new Vector<uint>(0x7FC0u), rounded);
    }

    /// <summary>fp32 to bf16 with round-to-nearest-even, NaN kept quiet (as LibTorch converts).</summary>
    private static ushort ToBFloat16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return 0x7FC0;
        u += 0x7FFFu + ((u >> 16) & 1);
        return (ushort)(u >> 16);
    }
}
