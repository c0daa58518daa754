using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// What every layer of one forward step shares: the new tokens' positions (which are also their
/// cache slots), their RoPE angles, the attention mask and the cache to read and write.
/// </summary>
/// <param name="Slots">Positions of the new tokens, int64 [T].</param>
/// <param name="MaxSlot">The largest value in <paramref name="Slots"/>, known on the host.</param>
/// <param name="Cos">RoPE cos for the new tokens, fp32 [T, head_dim].</param>
/// <param name="Sin">RoPE sin for the new tokens, fp32 [T, head_dim].</param>
/// <param name="Mask">Bool [T, S]: true where query t may attend key s. Without a cache S = T (the new tokens);
/// with a cache S = the cache length after this step, indexed by slot.</param>
/// <param name="Cache">The KV cache, or null for a cache-free forward.</param>
internal sealed record ForwardStep(Tensor Slots, long MaxSlot, Tensor Cos, Tensor Sin, Tensor Mask, AttentionCache? Cache)
{
    private readonly Dictionary<(int Start, int Rows, int G, ScalarType DType), Tensor> _folded = [];

    /// <summary>
    /// The mask of query rows [<paramref name="start"/>, start+rows) folded for G query heads per kv head
    /// (<see cref="GroupedAttention.Fold"/>), built once per step and shared by every layer. It lives as long as
    /// the dispose scope that was current when the step was created (the step's other tensors do too).
    /// </summary>
    public Tensor FoldedMask(int start, int rows, int g, ScalarType dtype)
    {
        var key = (start, rows, g, dtype);
        if (!_folded.TryGetValue(key, out var folded))
        {
            using var rowsMask = Mask.narrow(0, start, rows);
            folded = GroupedAttention.Fold(rowsMask, g, dtype);
            // Into the scope the step's mask was made in: it must outlive the layer that built it.
            folded.MoveToOtherDisposeScope(Mask);
            _folded[key] = folded;
        }
        return folded;
    }
}
