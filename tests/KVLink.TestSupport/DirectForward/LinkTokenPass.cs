using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// The per-query pass of KVLink run alone, outside the engine's scheduler: with every document's cache already in
/// place at its global positions (<see cref="KVLink.Core.Linking.DocumentPlacement"/>), runs all segment-0 tokens (BOS, system
/// prompt, memory markers, the link tokens after each document, the question and the generation header) in one forward
/// at their global positions, with the mask key_position &lt;= query_position. The reference the tests compare the engine with.
/// </summary>
internal static class LinkTokenPass
{
    /// <summary>
    /// Runs the segment-0 tokens from position <paramref name="from"/> on (0, or the prefix length when the
    /// prefix cache is already in place); returns logits of every computed token, or only the last ([1, 1, vocab]).
    /// </summary>
    public static Tensor Forward(LlamaForCausalLM model, AttentionCache cache, PromptLayout layout, bool lastOnly, int from = 0) =>
        Forward(model, cache, layout, layout.ComputedPositions(from), lastOnly);

    /// <summary>
    /// Runs the segment-0 tokens at <paramref name="positions"/> (ascending; every other position below the prompt's end
    /// must already be in the cache: prefix, documents, a conversation's kept tokens).
    /// </summary>
    public static Tensor Forward(LlamaForCausalLM model, AttentionCache cache, PromptLayout layout, long[] positions, bool lastOnly)
    {
        using var scope = NewDisposeScope();
        if (positions.Length == 0 || positions[^1] != layout.Length - 1)
            throw new ArgumentException("The prompt must end with segment-0 tokens (the question and generation header).", nameof(layout));
        var ids = tensor(positions.Select(p => (long)layout.Tokens[(int)p]).ToArray(), [1, positions.Length], device: model.Device);
        var mask = AttentionMasks.CausalOverCache(positions, layout.Length, model.Device);
        var step = model.Step(positions, mask, cache);
        return model.Forward(ids, step, lastOnly).MoveToOuterDisposeScope();
    }
}
