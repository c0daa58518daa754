using KVLink.Core.Caching;
using KVLink.Core.Caching.Format;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Decides whether a stored entry may be served for a document in a slot. A store can hold anything — an entry
/// written through the public <see cref="IKvCacheStore.PutAsync"/>, by another version, or damaged in a way its
/// checksum cannot see — so nothing about it is trusted: identity (model, format, tenant, id, slot), content
/// (text, title, kept fraction), every tensor dimension, the token ids the document implies, and finite numbers.
/// Any mismatch makes the entry a miss, and the document is encoded again.
/// </summary>
internal static class CacheEntryCheck
{
    /// <summary>Why <paramref name="entry"/> cannot serve <paramref name="expected"/>, or null when it can.</summary>
    /// <param name="entry">The stored entry.</param>
    /// <param name="key">The key the entry was read under.</param>
    /// <param name="fingerprint">The engine's model fingerprint.</param>
    /// <param name="format">The engine's prompt format name.</param>
    /// <param name="model">The engine's model (shapes and dtype).</param>
    /// <param name="expected">The document as this engine knows it.</param>
    /// <param name="expectedTokens">The document's exact tokens in the slot, or null for a compressed document
    /// (its kept tokens must then be an in-order selection of <paramref name="fullTokens"/> that keeps the header).</param>
    /// <param name="fullTokens">The document's uncompressed tokens in the slot.</param>
    /// <param name="headerLength">Tokens of the header that compression keeps.</param>
    public static string? Problem(DocumentKvCache entry, KvCacheKey key, string fingerprint, string format, LlamaForCausalLM model,
        KvLinkDocument expected, IReadOnlyList<int>? expectedTokens, IReadOnlyList<int> fullTokens, int headerLength)
    {
        if (entry.ModelFingerprint != fingerprint) return "another model";
        if (entry.PromptFormat != format) return "another prompt format";
        if (entry.Tenant != key.Tenant || entry.DocumentId != key.DocumentId || entry.Slot != key.Slot) return "another key";
        if (entry.Text != expected.Text || (entry.Title ?? "") != (expected.Title ?? "")) return "other document content";
        if (entry.KeepFraction != (expected.KeepFraction ?? 1.0)) return "another kept fraction";

        var c = model.Config;
        long[] shape = entry.Keys.shape;
        if (shape.Length != 4 || shape[0] != c.NumHiddenLayers || shape[1] != c.NumKeyValueHeads || shape[2] != entry.Length || shape[3] != c.HeadDim)
            return $"shape [{string.Join(", ", shape)}], expected [{c.NumHiddenLayers}, {c.NumKeyValueHeads}, {entry.Length}, {c.HeadDim}]";
        if (!entry.Values.shape.SequenceEqual(shape)) return "values and keys differ in shape";
        if (entry.Keys.dtype != model.DType || entry.Values.dtype != model.DType) return $"dtype {entry.Keys.dtype}, expected {model.DType}";

        if (expectedTokens is not null ? !entry.TokenIds.SequenceEqual(expectedTokens) : !IsCompressionOf(entry.TokenIds, fullTokens, headerLength))
            return $"token ids that the document does not give ({entry.Length} tokens, expected {expectedTokens?.Count ?? fullTokens.Count})";
        if (!AllFinite(entry.Keys) || !AllFinite(entry.Values)) return "non-finite keys or values";
        return null;
    }

    /// <summary>True when every element is finite (NaN or infinity in a cache poisons every answer that attends to it).</summary>
    public static bool AllFinite(Tensor t) => FiniteCheck.AllFinite(t);

    /// <summary>An in-order selection of <paramref name="full"/> that keeps its first <paramref name="header"/> tokens and its last.</summary>
    private static bool IsCompressionOf(IReadOnlyList<int> kept, IReadOnlyList<int> full, int header)
    {
        if (kept.Count > full.Count || kept.Count < Math.Min(header + 1, full.Count)) return false;
        for (int i = 0; i < header; i++) if (kept[i] != full[i]) return false;
        if (kept.Count > 0 && kept[^1] != full[^1]) return false;
        int at = header;
        for (int i = header; i < kept.Count; i++)
        {
            while (at < full.Count && full[at] != kept[i]) at++;
            if (at++ >= full.Count) return false;
        }
        return true;
    }
}
