using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Linking;

/// <summary>
/// The first half of KVLink's per-query work: every document's stored cache copied to its global positions in the cache and its keys
/// re-rotated there. The second half, the link tokens and the question over those positions, runs as the request's rows in
/// the scheduler's steps.
/// </summary>
internal static class DocumentPlacement
{
    /// <summary>
    /// Places stored document caches ([layers, kv_heads, L, d], keys rotated for local positions) at their
    /// positions and re-rotates all their keys to global positions in one vectorised pass.
    /// </summary>
    /// <returns>Time spent copying and time spent re-rotating.</returns>
    public static (TimeSpan Load, TimeSpan Rerotate) Place(
        LlamaForCausalLM model, AttentionCache cache, PromptLayout layout, IReadOnlyList<(Tensor Keys, Tensor Values)> documents)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int d = 0; d < documents.Count; d++) cache.Write(layout.Documents[d].Start, documents[d].Keys, documents[d].Values);
        var load = clock.Elapsed;
        if (layout.Documents.Count == 0) return (load, TimeSpan.Zero);

        // One rotation over the span from the first document to the end of the last: each position turns by
        // its document's start offset; positions between documents (link tokens) are computed after placement.
        int first = layout.Documents[0].Start, end = layout.Documents[^1].Start + layout.Documents[^1].Length;
        var offsets = new long[end - first];
        foreach (var doc in layout.Documents)
            Array.Fill(offsets, doc.Start, doc.Start - first, doc.Length);
        cache.RotateKeys(first, offsets, model.Rope);
        return (load, clock.Elapsed - load);
    }
}
