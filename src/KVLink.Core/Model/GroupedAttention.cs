using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Grouped-query attention without repeating keys or values: the G query heads that share a kv head are folded
/// into the query axis ([B, KV, G*T, d]), so one <c>scaled_dot_product_attention</c> call (or, for a float32 link pass
/// over a long cache, one <see cref="SmallRowsAttention"/> call) serves them all.
/// </summary>
internal static class GroupedAttention
{
    /// <summary>
    /// Attends q ([B, H, T, d]) to k and v ([B, KV, S, d]) under <paramref name="foldedMask"/> (from
    /// <see cref="ForwardStep.FoldedMask"/>: [G*T, S], or [B, 1, G*T, S] when each sequence has its own mask;
    /// shared by every layer of a step); returns [B, H, T, d].
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor foldedMask, int g)
    {
        var (b, h, t, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
        var qg = q.reshape(b, h / g, g * t, d);
        var o = UseMatmul ? Matmul(qg, k, v, foldedMask)
            : SmallRowsAttention.Serves(qg, k, v, foldedMask) ? SmallRowsAttention.Attend(qg, k, v, foldedMask)
            : nn.functional.scaled_dot_product_attention(qg, k, v, foldedMask); // [B, KV, G*T, d]
        return o.view(b, h, t, d);
    }

    /// <summary>
    /// Which CPU kernel computes attention: LibTorch's fused SDPA (default) or two batched GEMMs around a float32
    /// softmax (<c>KVLINK_ATTENTION=matmul</c>); the benchmark measures both (<c>--gemm-rates</c>, <c>--profile-link</c>).
    /// </summary>
    internal static bool UseMatmul { get; set; } = Environment.GetEnvironmentVariable("KVLINK_ATTENTION") == "matmul";

    /// <summary>softmax(q k^T / sqrt(d) + mask) v with oneDNN batched GEMMs; the softmax in float32.</summary>
    public static Tensor Matmul(Tensor q, Tensor k, Tensor v, Tensor additiveMask)
    {
        using var scope = NewDisposeScope();
        var scores = matmul(q, k.transpose(-2, -1));                                       // [B, KV, G*T, S]
        using var scale = (1.0 / Math.Sqrt(q.shape[^1])).ToScalar(); // held past the call (see HeldScalars)
        scores.mul_(scale).add_(additiveMask, HeldScalars.One);
        var p = nn.functional.softmax(scores, -1, ScalarType.Float32).to(q.dtype);
        return matmul(p, v).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The boolean [T, S] mask of a step repeated for the G folded query heads as an additive mask in
    /// <paramref name="dtype"/> (0 where allowed, -inf elsewhere), which is what SDPA turns a boolean mask into.
    /// A [B, T, S] mask (one per sequence of a padded batch, as in batched training) folds to [B, 1, G*T, S],
    /// which broadcasts over the kv heads.
    /// </summary>
    public static Tensor Fold(Tensor mask, int g, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        if (mask.dim() == 3)
        {
            var (b, tb, sb) = (mask.shape[0], mask.shape[1], mask.shape[2]);
            var perSequence = zeros([b, tb, sb], dtype, mask.device).masked_fill_(mask.logical_not(), HeldScalars.NegativeInfinity);
            var foldedBatch = g == 1 ? perSequence.unsqueeze(1) : perSequence.unsqueeze(1).expand(b, g, tb, sb).reshape(b, 1, g * tb, sb);
            return foldedBatch.MoveToOuterDisposeScope();
        }
        var (t, s) = (mask.shape[0], mask.shape[1]);
        var additive = zeros([t, s], dtype, mask.device).masked_fill_(mask.logical_not(), HeldScalars.NegativeInfinity);
        var folded = g == 1 ? additive : additive.unsqueeze(0).expand(g, t, s).reshape(g * t, s);
        return folded.MoveToOuterDisposeScope();
    }
}
