using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

public sealed partial class KvLinkEngine
{
    /// <summary>Everything a request needs before it reaches the model thread.</summary>
    private sealed record PreparedRequest(
        PromptLayout Layout, ContextMode Mode, GenerationOptions Options, IReadOnlyList<DocumentKvCache> Entries,
        int CachedTokens, int OnDemandTokens, TimeSpan StoreTime, TimeSpan OnDemandTime, Stopwatch Clock);

    private async Task<PreparedRequest> PrepareAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct)
    {
        ThrowIfDisposed();
        if (string.IsNullOrWhiteSpace(query)) throw new ArgumentException("The query is empty.", nameof(query));
        ArgumentNullException.ThrowIfNull(documentIds);
        for (int i = 0; i < documentIds.Count; i++)
            if (string.IsNullOrWhiteSpace(documentIds[i])) throw new ArgumentException($"Document id #{i} is empty.", nameof(documentIds));

        var gen = options ?? _options.Generation;
        gen.Validate();
        var mode = (gen as KvLinkGenerationOptions)?.Mode ?? _options.Mode;
        int k = (gen as KvLinkGenerationOptions)?.LinkTokens ?? _options.LinkTokens;
        PromptFormat.ValidateLinkTokens(k, documentIds.Count);

        // Entries read while resolving ids (another process's documents) are served from here, not read twice.
        var fetched = new Dictionary<KvCacheKey, DocumentKvCache>();
        try
        {
            var docs = new KvLinkDocument[documentIds.Count];
            for (int slot = 0; slot < docs.Length; slot++)
                docs[slot] = await ResolveDocumentAsync(documentIds[slot], fetched, ct).ConfigureAwait(false);
            // The whole prompt's length is known from the texts: refuse a prompt that cannot fit before encoding anything.
            CheckPromptFits(query, docs, k);

            var tokens = new List<IReadOnlyList<int>>();
            var entries = new List<DocumentKvCache>();
            int cached = 0, onDemand = 0;
            var onDemandTime = TimeSpan.Zero; // encoding slots that were not cached yet is prefill work, not cache loading
            for (int slot = 0; slot < docs.Length; slot++)
            {
                if (mode == ContextMode.KvLink)
                {
                    var started = clock.Elapsed;
                    var (entry, computed) = await GetOrEncodeAsync(documentIds[slot], docs[slot], slot, fetched, ct, countBytes: true).ConfigureAwait(false);
                    entries.Add(entry);
                    tokens.Add(entry.TokenIds);
                    if (computed) { onDemand += entry.Length; onDemandTime += clock.Elapsed - started; }
                    else cached += entry.Length;
                }
                else
                {
                    tokens.Add(await DocumentTokensAsync(documentIds[slot], docs[slot], slot, ct).ConfigureAwait(false));
                }
            }
            var layout = PromptFormat.Build(Tokenizer, tokens, query, k);
            int max = Model.Config.MaxPositionEmbeddings;
            if (layout.Length + 1 > max)
                throw new ArgumentException($"The prompt has {layout.Length} tokens; the model allows {max} positions, so at most {max - 1} prompt tokens leave room to answer.", nameof(documentIds));
            return new PreparedRequest(layout, mode, gen, entries, cached, onDemand, clock.Elapsed - onDemandTime, onDemandTime, clock);
        }
        finally
        {
            foreach (var e in fetched.Values) e.Dispose();
        }
    }

    /// <summary>
    /// Throws when the prompt cannot fit the model's positions, from token counts alone (a compressed document counts
    /// its smallest possible size), so that no document is encoded for a request that must fail.
    /// </summary>
    private void CheckPromptFits(string query, IReadOnlyList<KvLinkDocument> docs, int linkTokens)
    {
        long length = PromptFormat.Prefix(Tokenizer).Count + PromptFormat.Suffix(Tokenizer, query).Count + (long)linkTokens * docs.Count;
        for (int slot = 0; slot < docs.Count; slot++)
        {
            var full = PromptFormat.Document(Tokenizer, docs[slot], slot);
            double fraction = KeepFractionOf(docs[slot]);
            if (fraction >= 1) { length += full.Count; continue; }
            int header = PromptFormat.DocumentHeaderLength(Tokenizer, docs[slot], slot);
            length += header + (long)Math.Ceiling(fraction * (full.Count - header));
        }
        int max = Model.Config.MaxPositionEmbeddings;
        if (length + 1 > max)
            throw new ArgumentException($"The prompt has at least {length} tokens ({docs.Count} documents); the model allows {max} positions, so at most {max - 1} prompt tokens leave room to answer.", "documentIds");
    }

    /// <summary>Runs one request on the model thread: place caches (KVLink) or encode all (full prefill), then decode.</summary>
    private GenerationResult Run(PreparedRequest r, Action<int>? onToken, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var layout = r.Layout;
        using var scope = NewDisposeScope();
        // Long arithmetic: MaxNewTokens = int.MaxValue means "until a stop token or the end of the context".
        int capacity = (int)Math.Min((long)layout.Length + r.Options.MaxNewTokens, Model.Config.MaxPositionEmbeddings);
        using var cache = new KvCache(Model.Config, capacity, Model.DType, Model.Device);

        TimeSpan load = TimeSpan.Zero, rerotate = TimeSpan.Zero;
        int computed, cached = r.CachedTokens;
        var prefillStart = r.Clock.Elapsed;
        Tensor logits;
        if (r.Mode == ContextMode.KvLink)
        {
            var prefixStart = r.Clock.Elapsed;
            int prefix = PlacePrefix(cache, layout);
            var prefixTime = r.Clock.Elapsed - prefixStart; // a copy, except on an engine's first request
            var transfer = _options.CacheTransfer;
            (load, rerotate) = LinkTokens.PlaceDocuments(Model, cache, layout,
                [.. r.Entries.Select(e => transfer is null ? (e.Keys, e.Values) : transfer.ToDevice(e, Model.Device))]);
            load += prefixTime;
            prefillStart = r.Clock.Elapsed;
            logits = LinkTokens.Forward(Model, cache, layout, lastOnly: true, from: prefix);
            computed = layout.Length - layout.DocumentTokenCount - prefix + r.OnDemandTokens;
            cached += prefix;
        }
        else
        {
            logits = CausalPrefill.Run(Model, cache, layout.Tokens);
            computed = layout.Length;
        }
        var prefill = r.Clock.Elapsed - prefillStart;

        var stops = new HashSet<int>(r.Options.StopTokenIds ?? PromptFormat.StopTokenIds);
        var loop = new DecodeLoop(Model, cache, r.Options, stops);
        var (generated, ttft) = loop.Collect(logits, layout.Length, r.Clock, onToken, ct);
        var usage = new GenerationUsage(layout.Length, cached, computed, generated.Count);
        var timings = new GenerationTimings(r.StoreTime + load, rerotate, prefill + r.OnDemandTime, ttft, r.Clock.Elapsed);
        return new GenerationResult(Tokenizer.Decode(generated), generated, loop.Finish ?? FinishReason.Length, usage, timings);
    }

    /// <summary>
    /// Writes the cache of the prompt prefix (BOS, system turn, user header, memory start) at slots 0..P-1.
    /// The prefix attends only to itself, so its cache is the same for every request: it is computed once,
    /// on the model thread, and kept. Returns P (0 when the layout has no prefix).
    /// </summary>
    private int PlacePrefix(KvCache cache, PromptLayout layout)
    {
        int length = layout.PrefixLength;
        if (length == 0) return 0;
        var tokens = layout.Tokens.Take(length).ToArray();
        if (_prefix is not { } p || !p.Tokens.SequenceEqual(tokens))
        {
            _prefix?.Keys.Dispose();
            _prefix?.Values.Dispose();
            var (keys, values) = DocumentEncoder.Encode(Model, tokens);
            _prefix = p = new PrefixCache(tokens, keys.DetachFromDisposeScope(), values.DetachFromDisposeScope());
        }
        cache.Write(0, p.Keys, p.Values);
        return length;
    }

    /// <summary>
    /// A document's cache for a slot: from the store when the stored entry passes <see cref="CacheEntryCheck"/> for
    /// this very document, else encoded now (once, however many callers ask for the same content at the same time).
    /// </summary>
    private async Task<(DocumentKvCache Entry, bool Computed)> GetOrEncodeAsync(string id, KvLinkDocument document, int slot,
        IReadOnlyDictionary<KvCacheKey, DocumentKvCache>? fetched, CancellationToken ct, bool countBytes)
    {
        var key = CacheKey(id, slot);
        var stored = fetched is not null && fetched.TryGetValue(key, out var known) ? known.Share() : await Store.GetAsync(key, ct).ConfigureAwait(false);
        if (stored is not null)
        {
            if (Problem(stored, key, document) is not { } problem)
            {
                _telemetry.CacheHit(id, slot, countBytes ? stored.Length : 0);
                return (stored, false);
            }
            _telemetry.EntryRejected(id, slot, problem);
            stored.Dispose();
        }
        _telemetry.CacheMiss(id, slot);

        // Keyed by content too: a caller re-precomputing an id with new text never waits for (and gets) the old text's encoding.
        var inflight = new InflightKey(key, document.Text, document.Title, KeepFractionOf(document));
        var lazy = _inflight.GetOrAdd(inflight, _ => new Lazy<Task<DocumentKvCache>>(() => EncodeAndStoreAsync(id, document, slot, inflight)));
        return (await lazy.Value.WaitAsync(ct).ConfigureAwait(false), true);
    }

    /// <summary>Why a stored entry cannot serve <paramref name="document"/> under <paramref name="key"/>; null when it can.</summary>
    private string? Problem(DocumentKvCache entry, KvCacheKey key, KvLinkDocument document)
    {
        var doc = document with { KeepFraction = KeepFractionOf(document) };
        var full = PromptFormat.Document(Tokenizer, doc, key.Slot);
        bool compressed = doc.KeepFraction < 1;
        int header = compressed ? PromptFormat.DocumentHeaderLength(Tokenizer, doc, key.Slot) : 0;
        return CacheEntryCheck.Problem(entry, key, ModelFingerprint, PromptFormat.Name, Model, doc, compressed ? null : full, full, header);
    }

    private async Task<DocumentKvCache> EncodeAndStoreAsync(string id, KvLinkDocument document, int slot, InflightKey inflight)
    {
        var key = inflight.Key;
        try
        {
            int length = PromptFormat.Document(Tokenizer, document, slot).Count;
            if (length > Model.Config.MaxPositionEmbeddings)
                throw new ArgumentException($"Document '{id}' has {length} tokens; the model supports at most {Model.Config.MaxPositionEmbeddings} positions.");
            // Shared by every caller waiting for this key, so it is not bound to any one caller's cancellation.
            var (tokens, keys, values) = await _worker.Run(() =>
            {
                var tokens = DocumentTokens(id, document, slot);
                var (k, v) = DocumentEncoder.Encode(Model, tokens);
                return (tokens, k, v);
            }, CancellationToken.None).ConfigureAwait(false);
            var entry = new DocumentKvCache(id, key.Slot, tokens, keys, values, ModelFingerprint, PromptFormat.Name, document.Title, document.Text, key.Tenant,
                KvCacheRope.FromConfig(Model.Config), KeepFractionOf(document));
            // A model that produces NaN or infinity for a document must not leave a poisoned entry for every later request.
            if (!CacheEntryCheck.AllFinite(keys) || !CacheEntryCheck.AllFinite(values))
            {
                entry.Dispose();
                throw new InvalidOperationException($"Encoding document '{id}' gave non-finite keys or values; nothing was stored. The model's weights or dtype cannot represent this document.");
            }
            await Store.PutAsync(key, entry).ConfigureAwait(false);
            return entry;
        }
        finally
        {
            _inflight.TryRemove(inflight, out _);
        }
    }

    /// <summary>A document's tokens in a slot (compressed on the model thread when its kept fraction is below 1).</summary>
    private async Task<IReadOnlyList<int>> DocumentTokensAsync(string id, KvLinkDocument document, int slot, CancellationToken ct) =>
        KeepFractionOf(document) >= 1 ? PromptFormat.Document(Tokenizer, document, slot)
            : await _worker.Run(() => DocumentTokens(id, document, slot), ct).ConfigureAwait(false);

    /// <summary>
    /// The content of a known document: from this engine's catalog, or else from its stored slot-0 entry (another process
    /// precomputed it), which is kept in <paramref name="fetched"/> so the request does not read it twice.
    /// </summary>
    private async Task<KvLinkDocument> ResolveDocumentAsync(string id, Dictionary<KvCacheKey, DocumentKvCache>? fetched, CancellationToken ct)
    {
        if (_documents.TryGetValue(id, out var doc)) return doc;
        var key = CacheKey(id, 0);
        if (fetched is not null && fetched.TryGetValue(key, out var known)) return DocumentOf(known);
        var entry = await Store.GetAsync(key, ct).ConfigureAwait(false);
        if (entry is not null && entry.ModelFingerprint == ModelFingerprint && entry.PromptFormat == PromptFormat.Name
            && entry.DocumentId == id && entry.Tenant == _options.Tenant && entry.Slot == key.Slot)
        {
            doc = DocumentOf(entry);
            if (fetched is not null) fetched[key] = entry; else entry.Dispose();
            _documents.TryAdd(id, doc);
            return doc;
        }
        entry?.Dispose();
        throw new KeyNotFoundException($"Unknown document id '{id}': precompute it with PrecomputeAsync first.");
    }

    private static KvLinkDocument DocumentOf(DocumentKvCache entry) => new(entry.Text, entry.Title, entry.DocumentId, entry.KeepFraction);

    /// <summary>What one in-flight encoding computes: a key and the content it is computed from.</summary>
    private readonly record struct InflightKey(KvCacheKey Key, string Text, string? Title, double KeepFraction);
}
