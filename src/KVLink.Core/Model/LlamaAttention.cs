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
        if (lastOnly && step.Sequences is null) throw new ArgumentException("Only a cached step (of sequences) can compute its last rows alone.", nameof(lastOnly));
        if (lastOnly)
        {
            // Every row's k and v, queries only for the rows whose output is wanted (each sequence's last, or its last few).
            var kv = _qkv.Forward(x, step.Decode, first: 1, count: 2);
            (k, v) = (kv[0], kv[1]);
            var rows = step.OutputRows();
            q = _qkv.Forward(x.index_select(1, rows), step.Decode, first: 0, count: 1)[0];
            (cos, sin) = (cos.index_select(0, rows), sin.index_select(0, rows));
        }
        else
        {
            var qkv = _qkv.Forward(x, step.Decode);
            (q, k, v) = (qkv[0], qkv[1], qkv[2]);
        }
        long tq = q.shape[1];
        k = RotaryEmbedding.Apply(k.view(b, t, _kvHeads, _headDim).transpose(1, 2), step.Cos, step.Sin);   // [B, KV, T, d]
        v = v.view(b, t, _kvHeads, _headDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q.view(b, tq, _heads, _headDim).transpose(1, 2), cos, sin);            // [B, H, Tq, d]

        Tensor o;
        if (step.Sequences is { } sequences) o = AttendPerSequence(q, k, v, step, g, lastOnly);
        else o = GroupedAttention.Attend(q, k, v, step.FoldedMask(0, (int)tq, g, q.dtype), g);           // cache-free: [B, H, T, d]
        o = o.transpose(1, 2).reshape(b, tq, _heads * _headDim);
        return o_proj.Forward(o, step.Decode).MoveToOuterDisposeScope();
    }

    /// <summary>Adds int8 copies of the projections for single-token inputs; returns their bytes.</summary>
    public long QuantizeInt8()
    {
        _qkv.QuantizeInt8();
        o_proj.QuantizeInt8();
        return _qkv.Int8!.Bytes + o_proj.Int8!.Bytes;
    }

    /// <summary>Adds bf16 copies of float32 projections for decoding rows; returns their bytes.</summary>
    public long KeepBf16ForDecoding() => _qkv.KeepBf16ForDecoding() + o_proj.KeepBf16ForDecoding();

    /// <summary>
    /// Ragged attention of a batched step: each sequence's rows write their keys and values to its own cache and attend
    /// to that cache only. Rows of one sequence never see another's, as with a block-diagonal mask, but without the
    /// [rows, rows] scores such a mask would cost. With <paramref name="lastOnly"/>, q holds only the output rows
    /// (<see cref="ForwardStep.OutputRows"/>): each sequence with an output attends its last <see cref="SequenceRows.Outputs"/>
    /// rows. Returns [B, H, Tq, d].
    /// </summary>
    private Tensor AttendPerSequence(Tensor q, Tensor k, Tensor v, ForwardStep step, int g, bool lastOnly)
    {
        var sequences = step.Sequences!;
        // Indexed, and a list only from a second output on: a step runs this once per layer, and a one-sequence step
        // (every decoding request alone) should allocate nothing here beyond its tensors.
        Tensor? first = null;
        List<Tensor>? outputs = null;
        int qRow = 0;
        for (int i = 0; i < sequences.Count; i++)
        {
            var r = sequences[i];
            var (ks, vs) = r.Cache.Update(_layer, r.Positions, r.MaxPosition, Rows(k, r), Rows(v, r));
            Tensor o;
            if (!lastOnly) o = GroupedAttention.Attend(Rows(q, r), ks, vs, r.FoldedMask(g, q.dtype), g);
            else if (r.Output)
            {
                o = GroupedAttention.Attend(q.narrow(2, qRow, r.Outputs), ks, vs, r.FoldedLastMask(g, q.dtype), g);
                qRow += r.Outputs;
            }
            else continue;
            if (first is null) first = o;
            else (outputs ??= [first]).Add(o);
        }
        // Rows after the last sequence's pad a step to a reused row count (RowBuckets): they attend nothing, zeros out.
        var last = sequences[^1];
        if (!lastOnly && last.Start + last.Count < q.size(2))
        {
            long pad = q.size(2) - last.Start - last.Count;
            (outputs ??= first is null ? [] : [first]).Add(step.PaddingOutput(q.size(1), pad, q.size(3), q.dtype));
        }
        return outputs is not null ? cat(outputs, 2) : first ?? q; // no output rows: q is [B, H, 0, d]
    }

    /// <summary>The rows of <paramref name="r"/> in <paramref name="x"/> ([B, heads, rows, d]): x itself when they are all of its rows (a step of one sequence), which spares a view per layer.</summary>
    private static Tensor Rows(Tensor x, SequenceRows r) => r.Start == 0 && r.Count == x.size(2) ? x : x.narrow(2, r.Start, r.Count);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _qkv.Dispose();
        base.Dispose(disposing);
    }
}
