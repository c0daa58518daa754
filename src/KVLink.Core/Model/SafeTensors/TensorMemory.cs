using TorchSharp;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>
/// Gives access to the raw bytes of a contiguous CPU tensor in spans of bounded length.
/// <c>Tensor.bytes</c> is a <see cref="Span{T}"/>, so it cannot cover 2 GiB or more; larger tensors are
/// walked through narrow views of a flat alias, which share the memory without copying it.
/// </summary>
internal static class TensorMemory
{
    /// <summary>Largest span handed out by default: well under <see cref="int.MaxValue"/>.</summary>
    public const long DefaultChunkBytes = 1L << 30;

    /// <summary>Receives one chunk of tensor memory and its byte offset within the tensor.</summary>
    public delegate void ChunkAction(Span<byte> chunk, long byteOffset);

    /// <summary>Calls <paramref name="action"/> for consecutive chunks covering all of the tensor's bytes.</summary>
    /// <param name="tensor">A contiguous CPU tensor.</param>
    /// <param name="maxChunkBytes">Upper bound of one chunk (rounded down to whole elements, at least one).</param>
    /// <param name="action">Called once per chunk, in order.</param>
    public static void ForEachChunk(torch.Tensor tensor, long maxChunkBytes, ChunkAction action)
    {
        long count = tensor.numel();
        if (count == 0) return;
        long elementSize = tensor.ElementSize;
        if (count * elementSize <= maxChunkBytes)
        {
            action(tensor.bytes, 0);
            return;
        }
        long perChunk = Math.Max(1, maxChunkBytes / elementSize);
        using var flat = tensor.view(-1);
        for (long start = 0; start < count; start += perChunk)
        {
            using var slice = flat.narrow(0, start, Math.Min(perChunk, count - start));
            action(slice.bytes, start * elementSize);
        }
    }
}
