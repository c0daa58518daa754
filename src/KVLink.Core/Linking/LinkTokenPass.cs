using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Linking;

/// <summary>
/// The per-query pass of KVLink: with every document's cache already in place at its global slots,
/// runs all segment-0 tokens (BOS, system prompt, memory markers, the link tokens after each document,
/// the question and the generation header) in one forward pass at their global positions, with the mask
/// key_slot &lt;= query_position. Link tokens thereby attend to all earlier documents, restoring the
/// cross-document attention that independent encoding lost.
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
    /// Runs the segment-0 tokens at <paramref name="positions"/> (ascending; every other slot below the prompt's end
    /// must already be in the cache: prefix, documents, a conversation's kept tokens).
    /// </summary>
    public static Tensor Forward(LlamaForCausalLM model, AttentionCache cache, PromptLayout layout, long[] positions, bool lastOnly)
    {
        using var scope = NewDisposeScope();
        if (positions.Length == 0 || positions[^1] != layout.Length - 1)
            throw new ArgumentException("The prompt must end with segment-0 tokens (the question and generation header).", nameof(layout));
        var ids = tensor(positions.Select(p => (long)layout.Tokens[(int)p]).ToArray(), [1, positions.Length], device: model.Device);
        var mask = AttentionMasks.CausalOverSlots(positions, layout.Length, model.Device);
        var step = model.Step(positions, mask, cache);
        return model.Forward(ids, step, lastOnly).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Places stored document caches ([layers, kv_heads, L, d], keys rotated for local positions) at their
    /// slots and re-rotates all their keys to global positions in one vectorised pass.
    /// </summary>
    /// <returns>Time spent copying and time spent re-rotating.</returns>
    public static (TimeSpan Load, TimeSpan Rerotate) PlaceDocuments(
        LlamaForCausalLM model, AttentionCache cache, PromptLayout layout, IReadOnlyList<(Tensor Keys, Tensor Values)> documents)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int d = 0; d < documents.Count; d++) cache.Write(layout.Documents[d].Start, documents[d].Keys, documents[d].Values);
        var load = clock.Elapsed;
        if (layout.Documents.Count == 0) return (load, TimeSpan.Zero);

        // One rotation over the span from the first document to the end of the last: each slot turns by
        // its document's start offset; slots between documents (link tokens) are rewritten by the link pass.
        int first = layout.Documents[0].Start, end = layout.Documents[^1].Start + layout.Documents[^1].Length;
        var offsets = new long[end - first];
        foreach (var doc in layout.Documents)
            Array.Fill(offsets, doc.Start, doc.Start - first, doc.Length);
        cache.RotateKeys(first, offsets, model.Rope);
        return (load, clock.Elapsed - load);
    }
}
