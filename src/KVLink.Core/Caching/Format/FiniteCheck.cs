using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using KVLink.Core.Model.SafeTensors;
using TorchSharp;

namespace KVLink.Core.Caching.Format;

/// <summary>
/// Whether every element of a cache tensor is finite, at memory bandwidth. A float is non-finite exactly when its
/// exponent bits are all ones, i.e. when its bits without the sign are at least the bits of +infinity; comparing the
/// raw bits with SIMD is many times faster than LibTorch's <c>isfinite</c> on bf16 on the CPU; float and Half go through System.Numerics.Tensors (docs/reliability.md).
/// </summary>
internal static class FiniteCheck
{
    /// <summary>True when no element of <paramref name="tensor"/> is NaN or infinite.</summary>
    public static bool AllFinite(torch.Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (!tensor.is_floating_point()) return true;
        if (tensor.device_type != DeviceType.CPU || !tensor.is_contiguous() || tensor.dtype is not (torch.ScalarType.BFloat16 or torch.ScalarType.Float16 or torch.ScalarType.Float32))
        {
            using var scope = torch.NewDisposeScope();
            return tensor.isfinite().all().item<bool>();
        }
        bool finite = true;
        var dtype = tensor.dtype;
        TensorMemory.ForEachChunk(tensor, TensorMemory.DefaultChunkBytes, (chunk, _) =>
        {
            if (!finite) return;
            finite = dtype switch
            {
                // float and Half: System.Numerics.Tensors' vectorised IsFiniteAll. bf16 has no .NET type, so its bits are compared directly.
                torch.ScalarType.Float32 => TensorPrimitives.IsFiniteAll<float>(MemoryMarshal.Cast<byte, float>(chunk)),
                torch.ScalarType.Float16 => TensorPrimitives.IsFiniteAll<Half>(MemoryMarshal.Cast<byte, Half>(chunk)),
                _ => NoneAtLeast(MemoryMarshal.Cast<byte, ushort>(chunk), (ushort)0x7FFF, (ushort)0x7F80),
            };
        });
        return finite;
    }

    /// <summary>True when no <c>bits &amp; magnitude</c> reaches <paramref name="infinity"/>.</summary>
    private static bool NoneAtLeast<T>(ReadOnlySpan<T> bits, T magnitude, T infinity) where T : unmanaged, IBinaryInteger<T>
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && bits.Length >= Vector<T>.Count)
        {
            var mask = new Vector<T>(magnitude);
            var limit = new Vector<T>(infinity);
            var vectors = MemoryMarshal.Cast<T, Vector<T>>(bits);
            foreach (var v in vectors)
                if (Vector.GreaterThanOrEqualAny(v & mask, limit)) return false;
            i = vectors.Length * Vector<T>.Count;
        }
        for (; i < bits.Length; i++)
            if ((bits[i] & magnitude) >= infinity) return false;
        return true;
    }
}
