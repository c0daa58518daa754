using static TorchSharp.torch;

namespace KVLink.Core.Linking;

/// <summary>
/// KVLink's attention rule. A document token (segment j+1) sees only earlier tokens of its own document;
/// a segment-0 token (BOS, system, memory markers, link tokens, question, answer) sees every earlier token.
/// </summary>
internal static class SegmentMask
{
    /// <summary>True where the query at <paramref name="q"/> may attend the key at <paramref name="k"/>.</summary>
    public static bool Visible(IReadOnlyList<int> segments, int q, int k) =>
        k <= q && (segments[q] == 0 || segments[k] == segments[q]);

    /// <summary>The [T, T] boolean mask of a whole prompt, for the single-pass forward with positions 0..T-1.</summary>
    public static Tensor Build(IReadOnlyList<int> segments, Device? device = null)
    {
        int t = segments.Count;
        var m = new bool[t * t];
        for (int q = 0; q < t; q++)
            for (int k = 0; k <= q; k++) m[q * t + k] = segments[q] == 0 || segments[k] == segments[q];
        return tensor(m, [t, t], device: device);
    }
}
