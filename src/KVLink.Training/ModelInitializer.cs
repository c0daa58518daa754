using KVLink.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Training;

/// <summary>Creates freshly initialised Llama models for training from scratch.</summary>
internal static class ModelInitializer
{
    /// <summary>
    /// A model for <paramref name="config"/>: embeddings ~ N(0, 0.02²); projections ~ N(0, 1/fan_in) so that attention
    /// scores start at order 1 even in a narrow model (with 0.02 they start near 0 and a tiny model sits for long on a
    /// plateau of uniform attention); output projections (o_proj, down_proj) further scaled by 1/sqrt(2 * layers) as in
    /// GPT-2; norm weights 1. Drawn from <paramref name="seed"/> in name order, so runs repeat.
    /// </summary>
    public static LlamaForCausalLM Create(LlamaConfig config, int seed, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        var model = new LlamaForCausalLM(config, dtype, device);
        using var _ = no_grad();
        using var generator = new Generator((ulong)seed);
        double residual = 1.0 / Math.Sqrt(2.0 * config.NumHiddenLayers);
        foreach (var (name, p) in model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal))
        {
            if (config.TieWordEmbeddings && name == "lm_head.weight") continue;
            using var scope = NewDisposeScope();
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) { p.fill_(1.0); continue; }
            double std = name.Contains("embed_tokens", StringComparison.Ordinal) ? 0.02 : 1.0 / Math.Sqrt(p.shape[^1]);
            if (name.Contains("o_proj", StringComparison.Ordinal) || name.Contains("down_proj", StringComparison.Ordinal)) std *= residual;
            p.copy_((randn(p.shape, ScalarType.Float32, generator: generator) * std).to(p.dtype));
        }
        return model;
    }
}
