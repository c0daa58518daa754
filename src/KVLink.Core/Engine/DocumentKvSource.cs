using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Prompting;

namespace KVLink.Core.Engine;

/// <summary>
/// Where a document's stored keys and values (its <see cref="DocumentKvCache"/> entry) come from: precompute, find a
/// stored entry that really belongs to a document (<see cref="CacheEntryCheck"/>), or encode it through the scheduler
/// (<see cref="EncodeSequence"/>) once however many callers ask at the same time, and store it. Also the document tokens
/// a slot uses, compressed when the document's kept fraction is below 1.
/// </summary>
internal sealed class DocumentKvSource(EngineContext c, DocumentCatalog catalog)
{
    // Encodes in flight, shared by the callers that ask for the same content at once, cancelled when all of them gave up.
    private readonly SharedWork<InflightKey, DocumentKvCache> _inflight = new();
    private readonly DocumentCompression _compression = new(c);

    /// <summary>Precompute with accounting: the id, tokens of slot 0, and tokens encoded now (0 when everything was stored).</summary>
    public async Task<(string Id, int Tokens, int Computed)> PrecomputeAsync(KvLinkDocument document, CancellationToken ct)
    {
        string id = catalog.Id(document);
        var known = catalog.Resolved(document);
        // Re-precomputing a caller's id with new content replaces the document: its old entries (every slot) are removed
        // first. Entries are also checked against the content on every read, so a copy that survives elsewhere is a miss.
        if (catalog.Remember(id, known) is not null)
        {
            _compression.Forget(id);
            await c.Store.InvalidateAsync(new KvCacheScope(c.Options.Tenant, null, id), ct).ConfigureAwait(false);
        }
        using var activity = c.Telemetry.StartPrecompute(id);
        var clock = Stopwatch.StartNew();
        int tokens = 0, computed = 0, slotsComputed = 0;
        try
        {
            // One cache per document unless the policy is Exact with a numbered header: then slots 0..PrecomputeSlots-1.
            foreach (int slot in Enumerable.Range(0, c.Options.PrecomputeSlots).Select(c.StoredSlot).Distinct())
            {
                var (entry, wasComputed) = await GetOrEncodeAsync(id, known, slot, null, ct, countBytes: false, background: true).ConfigureAwait(false);
                if (slot == 0) tokens = entry.Length;
                if (wasComputed) { computed += entry.Length; slotsComputed++; }
            }
        }
        catch (Exception e) when (c.Telemetry.PrecomputeFailed(activity, e, clock.Elapsed)) { throw; }
        c.Telemetry.Precomputed(activity, id, clock.Elapsed, tokens, computed, slotsComputed);
        return (id, tokens, computed);
    }

    /// <summary>Forgets a document here and in the store (this tenant, every model and slot); returns the entries removed.</summary>
    public async Task<long> RemoveAsync(string id, CancellationToken ct)
    {
        catalog.Forget(id);
        _compression.Forget(id);
        return await c.Store.InvalidateAsync(new KvCacheScope(c.Options.Tenant, null, id), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// A document's cache for a slot: from the store when the stored entry passes <see cref="CacheEntryCheck"/> for
    /// this very document, else encoded now (once, however many callers ask for the same content at the same time).
    /// </summary>
    public async Task<(DocumentKvCache Entry, bool Computed)> GetOrEncodeAsync(string id, KvLinkDocument document, int slot,
        IReadOnlyDictionary<KvCacheKey, DocumentKvCache>? fetched, CancellationToken ct, bool countBytes, DocumentTokens? tokens = null, bool background = false)
    {
        var key = c.Key(id, slot);
        // The entry is the key's slot's (EngineContext.StoredSlot): the caller's slot itself, or 0 when one cache serves every slot;
        // tokens, when given (a request's, tokenized once), are the document's in the key's slot.
        var stored = fetched is not null && fetched.TryGetValue(key, out var known) ? known.Share() : await c.Store.GetAsync(key, ct).ConfigureAwait(false);
        if (stored is not null)
        {
            if (Problem(stored, key, document, tokens) is not { } problem)
            {
                c.Telemetry.CacheHit(id, slot, countBytes ? stored.Length : 0);
                return (stored, false);
            }
            c.Telemetry.EntryRejected(id, slot, problem);
            stored.Dispose();
        }
        c.Telemetry.CacheMiss(id, slot);

        // Keyed by content too: a caller re-precomputing an id with new text never waits for (and gets) the old text's encoding.
        var inflight = new InflightKey(key, document.Text, document.Title, catalog.KeepFraction(document));
        var entry = await _inflight.RunAsync(inflight, token => EncodeAndStoreAsync(id, document, inflight, background, tokens, token), ct).ConfigureAwait(false);
        return (entry, true);
    }

    /// <summary>
    /// The content of a known document: from the catalog, or else from its stored slot-0 entry (another process
    /// precomputed it), which is kept in <paramref name="fetched"/> so the request does not read it twice.
    /// </summary>
    public async Task<KvLinkDocument> ResolveAsync(string id, Dictionary<KvCacheKey, DocumentKvCache>? fetched, CancellationToken ct)
    {
        if (catalog.TryGet(id, out var doc)) return doc;
        var key = c.Key(id, 0);
        if (fetched is not null && fetched.TryGetValue(key, out var known)) return DocumentOf(known);
        var entry = await c.Store.GetAsync(key, ct).ConfigureAwait(false);
        if (entry is not null && entry.ModelFingerprint == c.Fingerprint && entry.PromptFormat == c.Format.Name
            && entry.DocumentId == id && entry.Tenant == c.Options.Tenant && entry.Slot == key.Slot)
        {
            doc = DocumentOf(entry);
            if (fetched is not null) fetched[key] = entry; else entry.Dispose();
            catalog.Remember(id, doc);
            return doc;
        }
        entry?.Dispose();
        throw new KeyNotFoundException($"Unknown document id '{id}': precompute it with PrecomputeAsync first.");
    }

    /// <summary>A request's tokens, each text tokenized once (<see cref="RequestTokens"/>).</summary>
    public RequestTokens Tokenize(ConversationPrompt conversation, IReadOnlyList<KvLinkDocument> documents, Func<int, int> tokenSlot) =>
        RequestTokens.Of(c, catalog, conversation, documents, tokenSlot);

    /// <summary>A document's tokens in the prompt, from its request's <paramref name="tokens"/>: compressed (<see cref="DocumentCompression"/>)
    /// when its kept fraction is below 1. They are the tokens of the slot <see cref="RequestTokens"/> chose: the stored entry's slot
    /// (<see cref="EngineContext.StoredSlot"/>) in KVLink mode, the document's own in full prefill.</summary>
    public async Task<IReadOnlyList<int>> TokensAsync(string id, KvLinkDocument document, DocumentTokens tokens, CancellationToken ct) =>
        !tokens.Compressed ? tokens.Full
            : await _compression.TokensAsync(id, document, catalog.KeepFraction(document), tokens.Slot, tokens.Full, tokens.HeaderLength, background: false, ct).ConfigureAwait(false);

    /// <summary>
    /// Encodes a document through the scheduler and stores it. <paramref name="cancel"/> fires when every caller waiting for
    /// this encode gave up: a queued encode then never runs and a running one leaves between steps, storing nothing; an
    /// encode that finished is stored whatever happens to its callers, so the work is not lost.
    /// </summary>
    private async Task<DocumentKvCache> EncodeAndStoreAsync(string id, KvLinkDocument document, InflightKey inflight, bool background, DocumentTokens? known,
        CancellationToken cancel)
    {
        var key = inflight.Key;
        int slot = key.Slot; // the cache's slot: its tokens are the document's there
        // The first caller's tokens when it had them (a request), else tokenized here, once (a precompute).
        var full = known?.Full ?? c.Format.Document(c.Tokenizer, document, slot);
        if (full.Count > c.Model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"Document '{id}' has {full.Count} tokens; the model supports at most {c.Model.Config.MaxPositionEmbeddings} positions.");
        // Compression scores tokens with a model, through the scheduler at this encode's priority; plain tokens need no model.
        var tokens = catalog.KeepFraction(document) >= 1 ? full
            : await _compression.TokensAsync(id, document, catalog.KeepFraction(document), slot, full, known?.HeaderLength, background, cancel).ConfigureAwait(false);
        // Encoded through the scheduler, in chunks and batched with whatever else runs (a precompute at low priority).
        var encode = new EncodeSequence(c.Model, tokens, background, cancel);
        c.Worker.Scheduler.Submit(encode);
        var (keys, values) = await encode.Task.ConfigureAwait(false);
        var entry = new DocumentKvCache(id, key.Slot, tokens, keys, values, c.Fingerprint, c.Format.Name, document.Title, document.Text, key.Tenant,
            KvCacheRope.FromConfig(c.Model.Config), catalog.KeepFraction(document));
        // A model that produces NaN or infinity for a document must not leave a poisoned entry for every later request.
        if (!CacheEntryCheck.AllFinite(keys) || !CacheEntryCheck.AllFinite(values))
        {
            entry.Dispose();
            throw new InvalidOperationException($"Encoding document '{id}' gave non-finite keys or values; nothing was stored. The model's weights or dtype cannot represent this document.");
        }
        await c.Store.PutAsync(key, entry).ConfigureAwait(false);
        return entry;
    }

    /// <summary>Why a stored entry cannot serve <paramref name="document"/> under <paramref name="key"/>; null when it can.</summary>
    private string? Problem(DocumentKvCache entry, KvCacheKey key, KvLinkDocument document, DocumentTokens? tokens)
    {
        var doc = catalog.Resolved(document);
        var full = tokens?.Full ?? c.Format.Document(c.Tokenizer, doc, key.Slot);
        bool compressed = doc.KeepFraction < 1;
        int header = !compressed ? 0 : tokens?.HeaderLength ?? c.Format.DocumentHeaderLength(c.Tokenizer, doc, key.Slot, full);
        return CacheEntryCheck.Problem(entry, key, c.Fingerprint, c.Format.Name, c.Model, doc, compressed ? null : full, full, header);
    }

    private static KvLinkDocument DocumentOf(DocumentKvCache entry) => new(entry.Text, entry.Title, entry.DocumentId, entry.KeepFraction);

    /// <summary>What one in-flight encoding computes: a key and the content it is computed from.</summary>
    private readonly record struct InflightKey(KvCacheKey Key, string Text, string? Title, double KeepFraction);
}
