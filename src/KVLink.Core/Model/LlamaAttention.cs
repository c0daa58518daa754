using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Grouped-query self-attention with RoPE. Keys and values keep their kv_heads (never repeated):
/// the G query heads that share a kv head are folded into the query length, so one
/// <c>scaled_dot_product_attention</c> call serves them all with the same explicit mask.
/// q, k and v are one GEMM (<see cref="FusedProjections"/>); the checkpoint keeps three weights.
/// </summary>
internal sealed class LlamaAttention : nn.Module
{
    private readonly Projection q_proj, k_proj, v_proj, o_proj;
    private readonly FusedProjections _qkv;
    private readonly int _heads, _kvHeads, _headDim, _layer;

    /// <summary>Creates the attention block of layer <paramref name="layer"/>.</summary>
    public LlamaAttention(LlamaConfig c, int layer, ScalarType dtype, Device device) : base("self_attn")
    {
        (_heads, _kvHeads, _headDim, _layer) = (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, layer);
        _qkv = new FusedProjections(["q_proj", "k_proj", "v_proj"], c.HiddenSize,
            [_heads * _headDim, _kvHeads * _headDim, _kvHeads * _headDim], dtype, device);
        (q_proj, k_proj, v_proj) = (_qkv.Parts[0], _qkv.Parts[1], _qkv.Parts[2]);
        o_proj = new Projection("o_proj", _heads * _headDim, c.HiddenSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>Attends the new tokens <paramref name="x"/> ([B, T, hidden]) to the keys the step's mask allows.</summary>
    public Tensor Forward(Tensor x, ForwardStep step) => Forward(x, step, lastOnly: false);

    /// <summary>
    /// Like <see cref="Forward(Tensor, ForwardStep)"/>; with <paramref name="lastOnly"/> keys and values are still
    /// computed (and cached) for every new token, but only the last token queries: the result is [B, 1, hidden].
    /// </summary>
    public Tensor Forward(Tensor x, ForwardStep step, bool lastOnly)
    {
        using var scope = NewDisposeScope();
        var (b, t, _) = (x.shape[0], x.shape[1], x.shape[2]);
        int g = _heads / _kvHeads;

        Tensor q, k, v;
        Tensor cos = step.Cos, sin = step.Sin;
        if (lastOnly && t > 1)
        {
            // Every token's k and v (one GEMM), only the last token's q.
            var kv = _qkv.Forward(x, first: 1, count: 2);
            (k, v) = (kv[0], kv[1]);
            q = _qkv.Forward(x.narrow(1, t - 1, 1), first: 0, count: 1)[0];
            (cos, sin) = (cos.narrow(0, t - 1, 1), sin.narrow(0, t - 1, 1));
        }
        else
        {
            var qkv = _qkv.Forward(x);
            (q, k, v) = (qkv[0], qkv[1], qkv[2]);
        }
        long tq = q.shape[1];
        k = RotaryEmbedding.Apply(k.view(b, t, _kvHeads, _headDim).transpose(1, 2), step.Cos, step.Sin);   // [B, KV, T, d]
        v = v.view(b, t, _kvHeads, _headDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q.view(b, tq, _heads, _headDim).transpose(1, 2), cos, sin);            // [B, H, Tq, d]

        if (step.Cache is not null) (k, v) = step.Cache.Update(_layer, step.Slots, step.MaxSlot, k, v);

        var mask = step.FoldedMask((int)(t - tq), (int)tq, g, q.dtype);
        var o = GroupedAttention.Attend(q, k, v, mask, g);                                                    // [B, H, Tq, d]
        o = o.transpose(1, 2).reshape(b, tq, _heads * _headDim);
        return o_proj.call(o).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _qkv.Dispose();
        base.Dispose(disposing);
    }
}
