using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Linking;

/// <summary>
/// Encodes one document on its own: positions 0..L-1, plain causal attention, no BOS and no system
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
        long[] positions = [.. Enumerable.Range(0, length).Select(i => (long)i)];
        var step = model.Step(positions, AttentionMasks.CausalOverSlots(positions, length, model.Device), cache);
        var ids = tensor(tokens.Select(t => (long)t).ToArray(), [1, length], device: model.Device);
        model.Hidden(ids, step, lastOnly: true); // only the cache is wanted: skip the vocabulary projection and the last layer's unused rows
        var (k, v) = cache.Export(0, length);
        return (k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }
}
