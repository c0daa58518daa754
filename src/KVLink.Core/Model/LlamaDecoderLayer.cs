using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>One pre-norm decoder layer: <c>h = x + attn(norm(x)); out = h + mlp(norm(h))</c>.</summary>
internal sealed class LlamaDecoderLayer : nn.Module
{
    private readonly RmsNorm input_layernorm, post_attention_layernorm;
    private readonly LlamaAttention self_attn;
    private readonly LlamaMlp mlp;

    /// <summary>Creates layer <paramref name="layer"/>.</summary>
    public LlamaDecoderLayer(LlamaConfig c, int layer, ScalarType dtype, Device device) : base($"{layer}")
    {
        input_layernorm = new RmsNorm("input_layernorm", c.HiddenSize, c.RmsNormEps, dtype, device);
        self_attn = new LlamaAttention(c, layer, dtype, device);
        post_attention_layernorm = new RmsNorm("post_attention_layernorm", c.HiddenSize, c.RmsNormEps, dtype, device);
        mlp = new LlamaMlp(c, dtype, device);
        RegisterComponents();
    }

    /// <summary>Adds int8 copies of the layer's projections for single-token inputs; returns their bytes.</summary>
    public long QuantizeInt8() => self_attn.QuantizeInt8() + mlp.QuantizeInt8();

    /// <summary>Adds bf16 copies of the layer's float32 projections for decoding rows; returns their bytes.</summary>
    public long KeepBf16ForDecoding() => self_attn.KeepBf16ForDecoding() + mlp.KeepBf16ForDecoding();

    /// <summary>Runs the layer over the new tokens of a step.</summary>
    public Tensor Forward(Tensor x, ForwardStep step) => Forward(x, step, lastOnly: false);

    /// <summary>
    /// Runs the layer; with <paramref name="lastOnly"/> every token's keys and values are cached but only the
    /// last token's output ([B, 1, hidden]) is computed: what the final layer needs when only the next token is wanted.
    /// </summary>
    public Tensor Forward(Tensor x, ForwardStep step, bool lastOnly)
    {
        using var scope = NewDisposeScope();
        var residual = lastOnly ? x.index_select(1, step.OutputRows()) : x;
        // The residual adds go into the block outputs in place (no new tensor; the sum is the same).
        var h = self_attn.Forward(input_layernorm.call(x), step, lastOnly).add_(residual, HeldScalars.One);
        return mlp.Forward(post_attention_layernorm.call(h), step.Decode).add_(h, HeldScalars.One).MoveToOuterDisposeScope();
    }
}
