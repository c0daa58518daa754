using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>Explicit boolean attention masks (true = may attend), built on the host from positions.</summary>
internal static class AttentionMasks
{
    /// <summary>
    /// Queries at <paramref name="queryPositions"/> against cache positions [0, <paramref name="keyLength"/>):
    /// position s is visible to query t when s &lt;= position(t). Bottom-right aligned, unlike SDPA's is_causal.
    /// </summary>
    public static Tensor CausalOverCache(ReadOnlySpan<long> queryPositions, int keyLength, Device? device = null)
    {
        int t = queryPositions.Length;
        var m = new bool[t * keyLength];
        for (int i = 0; i < t; i++)
            for (int s = 0; s < keyLength && s <= queryPositions[i]; s++) m[i * keyLength + s] = true;
        return tensor(m, [t, keyLength], device: device);
    }

    /// <summary>The new tokens attend to each other only: key j is visible to query i when position(j) &lt;= position(i).</summary>
    public static Tensor CausalSelf(ReadOnlySpan<long> positions, Device? device = null)
    {
        int t = positions.Length;
        var m = new bool[t * t];
        for (int i = 0; i < t; i++)
            for (int j = 0; j < t; j++) m[i * t + j] = positions[j] <= positions[i];
        return tensor(m, [t, t], device: device);
    }
}
