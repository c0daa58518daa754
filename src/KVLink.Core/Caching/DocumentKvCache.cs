using static TorchSharp.torch;

namespace KVLink.Core.Caching;

/// <summary>
/// The stored attention state of one document encoded alone in one slot: keys (rotated for local
/// positions 0..L-1) and values of every layer, stacked as [layers, kv_heads, L, head_dim], with what
/// is needed to check it belongs to the model, format and tenant asking for it.
/// </summary>
public sealed class DocumentKvCache : IDisposable
{
    /// <summary>
    /// Creates an entry; the tensors are owned by it from now on, and by nothing else: they are detached from the
    /// creating thread's dispose scope, so only <see cref="Dispose"/> frees them. An entry crosses threads and lives in
    /// stores; a scope that ended on the thread that made it must never free what a store or a later request still holds.
    /// </summary>
    internal DocumentKvCache(string documentId, int slot, IReadOnlyList<int> tokenIds, Tensor keys, Tensor values, string modelFingerprint, string promptFormat, string? title, string text,
        string tenant = KvCacheKey.DefaultTenant, KvCacheRope? rope = null, double keepFraction = 1.0)
    {
        if (!(keepFraction > 0 && keepFraction <= 1)) throw new ArgumentOutOfRangeException(nameof(keepFraction), keepFraction, "The kept fraction must be in (0, 1].");
        KeepFraction = keepFraction;
        ArgumentNullException.ThrowIfNull(tokenIds);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        if (keys.dim() != 4 || !keys.shape.SequenceEqual(values.shape) || keys.shape[2] != tokenIds.Count)
            throw new ArgumentException("Keys and values must both be [layers, kv_heads, tokens, head_dim] with one row per token.");
        if (keys.dtype != values.dtype) throw new ArgumentException("Keys and values must have one dtype.");
        ArgumentException.ThrowIfNullOrEmpty(tenant);
        (DocumentId, Slot, TokenIds, Keys, Values, ModelFingerprint, PromptFormat, Title, Text, Tenant, Rope) =
            (documentId, slot, tokenIds, keys.DetachFromDisposeScope(), values.DetachFromDisposeScope(), modelFingerprint, promptFormat, title, text, tenant, rope);
    }

    /// <summary>The document's id.</summary>
    public string DocumentId { get; }
    /// <summary>The slot the document was encoded for.</summary>
    public int Slot { get; }
    /// <summary>The document's tokens in that slot.</summary>
    public IReadOnlyList<int> TokenIds { get; }
    /// <summary>Keys rotated for local positions, [layers, kv_heads, L, head_dim].</summary>
    public Tensor Keys { get; }
    /// <summary>Values, [layers, kv_heads, L, head_dim].</summary>
    public Tensor Values { get; }
    /// <summary>Fingerprint of the model (config, weights sample, tokenizer, dtype) that produced the entry.</summary>
    public string ModelFingerprint { get; }
    /// <summary>Name of the prompt format that produced the tokens.</summary>
    public string PromptFormat { get; }
    /// <summary>The document's title, kept so other slots can be encoded later.</summary>
    public string? Title { get; }
    /// <summary>The document's text, kept so other slots can be encoded later.</summary>
    public string Text { get; }
    /// <summary>The tenant (namespace) the entry belongs to.</summary>
    public string Tenant { get; }
    /// <summary>The rotary embedding of the keys, when known (required to store keys quantised).</summary>
    internal KvCacheRope? Rope { get; }

    /// <summary>Fraction of the document's body tokens kept by compression before encoding (1 = uncompressed).</summary>
    public double KeepFraction { get; }

    /// <summary>Number of tokens.</summary>
    public int Length => TokenIds.Count;

    /// <summary>Bytes held by keys and values.</summary>
    public long ByteSize => 2 * Keys.numel() * Keys.ElementSize;

    /// <summary>The key this entry belongs under.</summary>
    public KvCacheKey Key => new(Tenant, ModelFingerprint, PromptFormat, DocumentId, Slot);

    /// <summary>
    /// Another entry over the same tensor memory with its own tensor handles: disposing either leaves the
    /// other valid (LibTorch frees the memory when the last handle goes). This is how stores hand out entries
    /// without copying them and without ever disposing memory a concurrent reader still uses. The new handles belong to
    /// no dispose scope, even when made inside one: a store that shares an entry given to it on the model thread (a kept
    /// session written inside a step's scope) keeps its handles after that scope ends (issue 28: they were freed with it).
    /// </summary>
    public DocumentKvCache Share() =>
        new(DocumentId, Slot, TokenIds, Keys.alias(), Values.alias(), ModelFingerprint, PromptFormat, Title, Text, Tenant, Rope, KeepFraction);

    /// <inheritdoc/>
    public void Dispose()
    {
        Keys.Dispose();
        Values.Dispose();
    }
}
