using System.Runtime.InteropServices;
using KVLink.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Moves cached keys to new positions. Document caches store keys rotated for their local positions
/// 0..L-1; rotations compose (R(a+b) = R(a)R(b)), so rotating every key by its document's start offset
/// gives exactly the key at its global position. One vectorised pass covers all layers, heads and
/// tokens; angles are fp32 and the arithmetic runs in fp32 before casting back to the cache dtype.
/// </summary>
internal static class RopeRerotation
{
    /// <summary>
    /// Rotates <paramref name="keys"/> ([..., T, head_dim], any leading dims such as [layers, kv_heads])
    /// by <paramref name="offsets"/> ([T] int64, one per token) and returns a new tensor.
    /// </summary>
    public static Tensor Shift(Tensor keys, Tensor offsets, RotaryEmbedding rope)
    {
        using var scope = NewDisposeScope();
        var (cos, sin) = rope.Angles(offsets);
        return RotaryEmbedding.Apply(keys, cos, sin).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Rotates <paramref name="keys"/> ([..., T, head_dim], a view is fine) in place by <paramref name="offsets"/>
    /// (one per token). Same numbers as <see cref="Shift"/>: fp32 angles from <paramref name="rope"/>, fp32
    /// arithmetic, round-to-nearest-even back to the keys' dtype.
    /// </summary>
    /// <remarks>
    /// For bf16 and float32 CPU tensors whose rows are contiguous (the KV cache) this is one fused pass over the keys,
    /// with no temporaries: the tensor path allocates and walks about eight fp32 copies of the region, which dominated
    /// re-rotation time (on float32 caches, the automatic dtype on CPUs without native bf16, it took 1.6 s of a 4.3 s
    /// KVLink TTFT at 5k tokens of the 1B shape). Every CPU gets a vector body: AVX-512 rows in 512-bit vectors, others in
    /// <see cref="System.Numerics.Vector{T}"/> (256-bit on AVX2, 128-bit on ARM64). Other dtypes and devices use the tensor
    /// path and copy the result back.
    /// </remarks>
    public static void ShiftInPlace(Tensor keys, IReadOnlyList<long> offsets, RotaryEmbedding rope)
    {
        int dims = (int)keys.dim();
        if (dims < 2 || keys.shape[^2] != offsets.Count) throw new ArgumentException("keys must be [..., T, head_dim] with one offset per token.", nameof(keys));
        if (keys.numel() == 0) return;
        using var scope = NewDisposeScope();
        long d = keys.shape[^1];
        bool bf16 = keys.dtype == ScalarType.BFloat16;
        int elementSize = bf16 ? 2 : 4;
        bool fused = keys.device_type == DeviceType.CPU && (bf16 || keys.dtype == ScalarType.Float32) && d % 2 == 0
                     && keys.stride(dims - 1) == 1 && keys.stride(dims - 2) == d && keys.numel() * elementSize <= int.MaxValue;
        if (!fused)
        {
            keys.copy_(Shift(keys, tensor(offsets.ToArray(), device: keys.device), rope));
            return;
        }

        // cos/sin of each distinct offset, computed by the same code as the tensor path.
        var distinct = offsets.Distinct().ToArray();
        var index = new Dictionary<long, int>(distinct.Length);
        for (int i = 0; i < distinct.Length; i++) index[distinct[i]] = i;
        var (cosT, sinT) = rope.Angles(tensor(distinct));
        float[] cos = cosT.contiguous().data<float>().ToArray(), sin = sinT.contiguous().data<float>().ToArray();
        int[] row = [.. offsets.Select(o => index[o])];

        // Leading blocks: every index over the dims before [T, d], each a run of T rows of d contiguous values.
        long blocks = keys.numel() / (offsets.Count * d);
        long[] shape = keys.shape, strides = keys.stride();
        nint basePtr = Data(keys);
        int t = offsets.Count, dd = (int)d;
        // Small regions run on the calling thread: waking pool threads costs more than the work (milliseconds on a busy VM).
        int parallelism = keys.numel() * elementSize < ParallelThresholdBytes ? 1 : Math.Max(1, Environment.ProcessorCount);
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = parallelism }, block =>
        {
            long offset = 0, rest = block;
            for (int dim = dims - 3; dim >= 0; dim--)
            {
                offset += rest % shape[dim] * strides[dim];
                rest /= shape[dim];
            }
            unsafe
            {
                if (bf16)
                {
                    ushort* p = (ushort*)basePtr + offset;
                    for (int i = 0; i < t; i++, p += dd) RopeRows.Rotate(p, dd, cos, sin, row[i] * dd);
                }
                else
                {
                    float* p = (float*)basePtr + offset;
                    for (int i = 0; i < t; i++, p += dd) RopeRows.Rotate(p, dd, cos, sin, row[i] * dd);
                }
            }
        });
    }

    private const long ParallelThresholdBytes = 8L << 20;

    /// <summary>
    /// Address of the first element of a CPU tensor or view: <c>Tensor.bytes</c> refuses non-contiguous views,
    /// so take it from a one-element view of the same storage at the same offset.
    /// </summary>
    internal static unsafe nint Data(Tensor t)
    {
        using var first = t.as_strided([1], [1], t.storage_offset());
        fixed (byte* p = &MemoryMarshal.GetReference(first.bytes)) return (nint)p;
    }

    /// <summary>Per-token offsets for documents placed at <paramref name="starts"/> with <paramref name="lengths"/>.</summary>
    public static Tensor Offsets(IReadOnlyList<int> starts, IReadOnlyList<int> lengths, Device? device = null)
    {
        var offsets = new long[lengths.Sum()];
        int at = 0;
        for (int d = 0; d < starts.Count; d++)
            for (int i = 0; i < lengths[d]; i++) offsets[at++] = starts[d];
        return tensor(offsets, device: device);
    }
}
