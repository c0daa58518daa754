using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Grouped-query self-attention with RoPE. Keys and values keep their kv_heads (never repeated):
/// the G query heads that share a kv head are folded into the query length, so one
/// <c>scaled_dot_product_attention</c> call serves them all with the same explicit mask.
/// </summary>
internal sealed class LlamaAttention : nn.Module
{
    private readonly Projection q_proj, k_proj, v_proj, o_proj;
    private readonly int _heads, _kvHeads, _headDim, _layer;

    /// <summary>Creates the attention block of layer <paramref name="layer"/>.</summary>
    public LlamaAttention(LlamaConfig c, int layer, ScalarType dtype, Device device) : base("self_attn")
    {
        (_heads, _kvHeads, _headDim, _layer) = (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, layer);
        q_proj = new Projection("q_proj", c.HiddenSize, _heads * _headDim, dtype, device);
        k_proj = new Projection("k_proj", c.HiddenSize, _kvHeads * _headDim, dtype, device);
        v_proj = new Projection("v_proj", c.HiddenSize, _kvHeads * _headDim, dtype, device);
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
        if (lastOnly && step.Sequences is not null) throw new NotSupportedException("A batched step of several sequences computes every row.");
        using var scope = NewDisposeScope();
        var (b, t, _) = (x.shape[0], x.shape[1], x.shape[2]);

        var k = k_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);   // [B, KV, T, d]
        var v = v_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        k = RotaryEmbedding.Apply(k, step.Cos, step.Sin);
        var (xq, cos, sin, queryMask) = lastOnly
            ? (x.narrow(1, t - 1, 1), step.Cos.narrow(0, t - 1, 1), step.Sin.narrow(0, t - 1, 1), step.Mask.narrow(0, t - 1, 1))
            : (x, step.Cos, step.Sin, step.Mask);
        long tq = xq.shape[1];
        var q = q_proj.call(xq).view(b, tq, _heads, _headDim).transpose(1, 2);  // [B, H, Tq, d]
        q = RotaryEmbedding.Apply(q, cos, sin);

        if (step.Sequences is { } sequences)
        {
            return o_proj.call(AttendPerSequence(q, k, v, sequences)).MoveToOuterDisposeScope();
        }
        if (step.Cache is not null) (k, v) = step.Cache.Update(_layer, step.Slots, step.MaxSlot, k, v);
        return o_proj.call(Attend(q, k, v, queryMask)).MoveToOuterDisposeScope();
    }

    /// <summary>Attention of queries [B, H, T, d] over keys/values [B, KV, S, d] under a [T, S] mask; returns [B, T, H*d].</summary>
    private Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor queryMask)
    {
        var (b, t) = (q.shape[0], q.shape[2]);
        int g = _heads / _kvHeads;
        // Fold the G query heads of each kv head into the query axis: [B, KV, G*T, d].
        var qg = q.reshape(b, _kvHeads, g * t, _headDim);
        long s = k.shape[2];
        var mask = queryMask.unsqueeze(0).expand(g, t, s).reshape(g * t, s);
        var o = nn.functional.scaled_dot_product_attention(qg, k, v, mask);       // [B, KV, G*T, d]
        return o.view(b, _heads, t, _headDim).transpose(1, 2).reshape(b, t, _heads * _headDim);
    }

    /// <summary>
    /// Ragged attention of a batched step: each sequence's rows write their keys and values to its own cache and attend
    /// to that cache only. Rows of one sequence never see another's, as with a block-diagonal mask, but without the
    /// [rows, rows] scores such a mask would cost.
    /// </summary>
    private Tensor AttendPerSequence(Tensor q, Tensor k, Tensor v, IReadOnlyList<SequenceRows> sequences)
    {
        var outputs = new Tensor[sequences.Count];
        for (int i = 0; i < sequences.Count; i++)
        {
            var r = sequences[i];
            var (ks, vs) = r.Cache.Update(_layer, r.Slots, r.MaxSlot, k.narrow(2, r.Start, r.Count), v.narrow(2, r.Start, r.Count));
            outputs[i] = Attend(q.narrow(2, r.Start, r.Count), ks, vs, r.Mask);
        }
        return outputs.Length == 1 ? outputs[0] : cat(outputs, 1);
    }
}
