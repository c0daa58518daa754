using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// Encodes one document on its own, outside the engine's scheduler (the reference the tests compare the scheduler's
/// encodes with): positions 0..L-1, plain causal attention, no BOS and no system
/// prompt (its first token is its own attention sink), and returns its keys and values of every layer.
/// </summary>
internal static class DocumentEncoder
{
    /// <summary>Keys (rotated for local positions) and values, each [layers, kv_heads, L, head_dim], in the model's dtype.</summary>
    public static (Tensor Keys, Tensor Values) Encode(LlamaForCausalLM model, IReadOnlyList<int> tokens)
    {
        int length = tokens.Count;
        if (length == 0) throw new ArgumentException("A document must have at least one token.", nameof(tokens));
        if (length > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"The document has {length} tokens; the model supports at most {model.Config.MaxPositionEmbeddings} positions.", nameof(tokens));

        using var scope = NewDisposeScope();
        using var cache = new AttentionCache(model.Config, length, model.DType, model.Device);
        // Only the cache is wanted: no vocabulary projection; long documents go in chunks like a full prefill.
        CausalPrefill.Fill(model, cache, tokens);
        var (k, v) = cache.Export(0, length);
        return (k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }
}
