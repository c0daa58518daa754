using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Linking;

/// <summary>
/// Moves cached keys to new positions. Document caches store keys rotated for their local positions
/// 0..L-1; rotations compose (R(a+b) = R(a)R(b)), so rotating every key by its document's start offset
/// gives exactly the key at its global position. One vectorised pass covers all layers, heads and
/// tokens; angles are fp32 and the arithmetic runs in fp32 before casting back to the cache dtype.
/// </summary>
public static class RopeRerotation
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
