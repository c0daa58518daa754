using TorchSharp;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Caching;

/// <summary>
/// Symmetric int8 quantisation of document caches. Keys are quantised in their pre-RoPE form: the keys
/// (rotated for local positions 0..L-1) are rotated back by -p, quantised, and on load dequantised and
/// rotated forward by +p in fp32. The engine then rotates them by the document's start offset as usual,
/// so quantisation error is the same wherever a document is placed.
/// </summary>
internal static class Int8Quantizer
{
    /// <summary>Quantises [layers, kv_heads, L, d] keys and values; returns int8 tensors and fp32 scales.</summary>
    public static (Tensor Keys, Tensor KeyScales, Tensor Values, Tensor ValueScales) Quantize(Tensor keys, Tensor values, RotaryEmbedding rope, bool perChannel)
    {
        using var scope = NewDisposeScope();
        var preRope = Rotate(keys.to(ScalarType.Float32), rope, sign: -1);
        var (qk, sk) = Quantize(preRope, perChannel);
        var (qv, sv) = Quantize(values.to(ScalarType.Float32), perChannel);
        return (qk.MoveToOuterDisposeScope(), sk.MoveToOuterDisposeScope(), qv.MoveToOuterDisposeScope(), sv.MoveToOuterDisposeScope());
    }

    /// <summary>Inverse of <see cref="Quantize(Tensor, Tensor, RotaryEmbedding, bool)"/>; returns keys rotated for local positions and values, in <paramref name="dtype"/>.</summary>
    public static (Tensor Keys, Tensor Values) Dequantize(Tensor keys, Tensor keyScales, Tensor values, Tensor valueScales, RotaryEmbedding rope, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var k = Rotate(keys.to(ScalarType.Float32) * keyScales, rope, sign: +1).to(dtype).contiguous();
        var v = (values.to(ScalarType.Float32) * valueScales).to(dtype).contiguous();
        return (k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }

    /// <summary>Rotates fp32 [.., L, d] keys by sign * (0..L-1).</summary>
    private static Tensor Rotate(Tensor keys, RotaryEmbedding rope, int sign)
    {
        using var scope = NewDisposeScope();
        using Scalar length = keys.shape[2].ToScalar(), direction = sign.ToScalar(); // held past the calls (see HeldScalars)
        var positions = arange(HeldScalars.Zero, length, HeldScalars.One, ScalarType.Int64).mul(direction);
        var (cos, sin) = rope.Angles(positions);
        return RotaryEmbedding.Apply(keys, cos, sin).MoveToOuterDisposeScope();
    }

    private static (Tensor Q, Tensor Scale) Quantize(Tensor x, bool perChannel)
    {
        using var scope = NewDisposeScope();
        long dim = perChannel ? 2 : 3;
        // Scalars held past the calls (see HeldScalars).
        using Scalar int8Max = 127.0.ToScalar(), tiny = 1e-20.ToScalar(), low = (-127).ToScalar(), high = 127.ToScalar();
        var scale = x.abs().amax([dim], keepdim: true).div(int8Max).clamp_min(tiny);
        var q = (x / scale).round().clamp(low, high).to(ScalarType.Int8).contiguous();
        return (q.MoveToOuterDisposeScope(), scale.contiguous().MoveToOuterDisposeScope());
    }
}
