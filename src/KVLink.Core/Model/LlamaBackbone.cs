using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>The <c>model.*</c> part of Llama: embedding, decoder layers, final norm.</summary>
internal sealed class LlamaBackbone : nn.Module
{
    private readonly TokenEmbedding embed_tokens;
    private readonly nn.Module layers;
    private readonly RmsNorm norm;
    private readonly LlamaDecoderLayer[] _layers;

    /// <summary>Creates the backbone for a config.</summary>
    public LlamaBackbone(LlamaConfig c, ScalarType dtype, Device device) : base("model")
    {
        embed_tokens = new TokenEmbedding(c.VocabSize, c.HiddenSize, dtype, device);
        _layers = [.. Enumerable.Range(0, c.NumHiddenLayers).Select(i => new LlamaDecoderLayer(c, i, dtype, device))];
        layers = nn.ModuleList(_layers);
        norm = new RmsNorm("norm", c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>The token embedding.</summary>
    public TokenEmbedding EmbedTokens => embed_tokens;

    /// <summary>Adds int8 copies of every layer's projections for single-token inputs; returns their bytes.</summary>
    public long QuantizeInt8() => _layers.Sum(l => l.QuantizeInt8());

    /// <summary>Adds bf16 copies of every layer's float32 projections for decoding rows; returns their bytes.</summary>
    public long KeepBf16ForDecoding() => _layers.Sum(l => l.KeepBf16ForDecoding());

    /// <summary>Embeds tokens and runs every layer and the final norm.</summary>
    public Tensor Forward(Tensor tokens, ForwardStep step) => Forward(tokens, step, lastOnly: false);

    /// <summary>
    /// Embeds tokens and runs every layer and the final norm; with <paramref name="lastOnly"/> the final layer
    /// computes only the last token's output ([B, 1, hidden]), still caching every token's keys and values.
    /// </summary>
    public Tensor Forward(Tensor tokens, ForwardStep step, bool lastOnly)
    {
        using var scope = NewDisposeScope();
        var h = embed_tokens.call(tokens);
        // A step whose every row is wanted (only decoding rows, say) is the full forward: no rows to pick out.
        lastOnly &= !step.EveryRowOutputs;
        for (int i = 0; i < _layers.Length; i++) h = _layers[i].Forward(h, step, lastOnly && i == _layers.Length - 1);
        return norm.call(h).MoveToOuterDisposeScope();
    }
}
