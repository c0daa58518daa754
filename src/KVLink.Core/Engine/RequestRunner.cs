using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Request execution: <see cref="PrepareAsync"/> resolves the documents and their caches off the model thread;
/// on the model thread, a <see cref="GenerationSequence"/> in the <see cref="BatchScheduler"/> uses <see cref="Place"/>
/// (the caches placed, or nothing for full prefill), runs its computed tokens batched with other requests, and decodes.
/// Keeps the cache of the prompt prefix, which every request shares.
/// </summary>
internal sealed class RequestRunner(EngineContext c, DocumentCaches documents) : IDisposable
{
    private PrefixCache? _prefix; // touched only on the model thread

    private sealed record PrefixCache(int[] Tokens, Tensor Keys, Tensor Values);

    /// <summary>Everything a request needs before it reaches the model thread.</summary>
    public sealed record Prepared(
        PromptLayout Layout, ContextMode Mode, GenerationOptions Options, IReadOnlyList<DocumentKvCache> Entries,
        int CachedTokens, int OnDemandTokens, TimeSpan StoreTime, TimeSpan OnDemandTime, Stopwatch Clock);

    public async Task<Prepared> PrepareAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(query)) throw new ArgumentException("The query is empty.", nameof(query));
        ArgumentNullException.ThrowIfNull(documentIds);
        for (int i = 0; i < documentIds.Count; i++)
            if (string.IsNullOrWhiteSpace(documentIds[i])) throw new ArgumentException($"Document id #{i} is empty.", nameof(documentIds));

        var gen = options ?? c.Options.Generation;
        gen.Validate();
        var mode = (gen as KvLinkGenerationOptions)?.Mode ?? c.Options.Mode;
        int k = (gen as KvLinkGenerationOptions)?.LinkTokens ?? c.Options.LinkTokens;
        c.Format.ValidateLinkTokens(k, documentIds.Count);

        // Entries read while resolving ids (another process's documents) are served from here, not read twice.
        var fetched = new Dictionary<KvCacheKey, DocumentKvCache>();
        try
        {
            var docs = new KvLinkDocument[documentIds.Count];
            for (int slot = 0; slot < docs.Length; slot++)
                docs[slot] = await documents.ResolveAsync(documentIds[slot], fetched, ct).ConfigureAwait(false);
            // The whole prompt's length is known from the texts: refuse a prompt that cannot fit before encoding anything.
            var fullTokens = CheckPromptFits(query, docs, k, mode); // tokenized once: the entry checks below reuse them

            var tokens = new List<IReadOnlyList<int>>();
            var entries = new List<DocumentKvCache>();
            int cached = 0, onDemand = 0;
            var onDemandTime = TimeSpan.Zero; // encoding slots that were not cached yet is prefill work, not cache loading
            for (int slot = 0; slot < docs.Length; slot++)
            {
                if (mode == ContextMode.KvLink)
                {
                    var started = clock.Elapsed;
                    var (entry, computed) = await documents.GetOrEncodeAsync(documentIds[slot], docs[slot], slot, fetched, ct, countBytes: true, fullTokens[slot]).ConfigureAwait(false);
                    entries.Add(entry);
                    tokens.Add(entry.TokenIds);
                    if (computed) { onDemand += entry.Length; onDemandTime += clock.Elapsed - started; }
                    else cached += entry.Length;
                }
                else
                {
                    tokens.Add(await documents.TokensAsync(documentIds[slot], docs[slot], TokenSlot(slot, mode), ct).ConfigureAwait(false));
                }
            }
            var layout = c.Format.Build(c.Tokenizer, tokens, query, k);
            int max = c.Model.Config.MaxPositionEmbeddings;
            if (layout.Length + 1 > max)
                throw new ArgumentException($"The prompt has {layout.Length} tokens; the model allows {max} positions, so at most {max - 1} prompt tokens leave room to answer.", nameof(documentIds));
            return new Prepared(layout, mode, gen, entries, cached, onDemand, clock.Elapsed - onDemandTime, onDemandTime, clock);
        }
        finally
        {
            foreach (var e in fetched.Values) e.Dispose();
        }
    }

    /// <summary>The prompt a request in <paramref name="mode"/> would use (documents resolved, caches not loaded).</summary>
    public async Task<PromptLayout> LayoutAsync(string query, IReadOnlyList<string> documentIds, int linkTokens, ContextMode mode, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(documentIds);
        var docs = new List<IReadOnlyList<int>>();
        for (int slot = 0; slot < documentIds.Count; slot++)
            docs.Add(await documents.TokensAsync(documentIds[slot], await documents.ResolveAsync(documentIds[slot], null, ct).ConfigureAwait(false),
                TokenSlot(slot, mode), ct).ConfigureAwait(false));
        return c.Format.Build(c.Tokenizer, docs, query, linkTokens);
    }

    /// <summary>
    /// Queues a prepared request in the scheduler; it joins the running batch at the next step that has room. Cancelled
    /// while queued it never runs; cancelled later, it leaves between two steps. <paramref name="onToken"/> runs on the model thread.
    /// </summary>
    public Task<GenerationResult> Start(Prepared r, Action<int>? onToken, CancellationToken ct)
    {
        var sequence = new GenerationSequence(this, r, onToken, ct);
        c.Worker.Scheduler.Submit(sequence);
        return sequence.Task;
    }

    /// <summary>Cache positions a request needs: its prompt and its answer, within the model's positions.</summary>
    // Long arithmetic: MaxNewTokens = int.MaxValue means "until a stop token or the end of the context".
    public int Capacity(Prepared r) => (int)Math.Min((long)r.Layout.Length + r.Options.MaxNewTokens, c.Model.Config.MaxPositionEmbeddings);

    /// <summary>The request's attention cache (model thread; the caller disposes it).</summary>
    public AttentionCache NewCache(Prepared r) => new(c.Model.Config, Capacity(r), c.Model.DType, c.Model.Device);

    /// <summary>What placing a request's caches did: the prompt positions left to compute, token accounting and times.</summary>
    public sealed record Placement(long[] Positions, int Cached, int Computed, TimeSpan Load, TimeSpan Rerotate, TimeSpan PrefillStart);

    /// <summary>
    /// On the model thread: KVLink places the prefix and document caches (re-rotated) and leaves the segment-0 tokens
    /// to compute; full prefill leaves every token to compute.
    /// </summary>
    public Placement Place(Prepared r, AttentionCache cache)
    {
        var layout = r.Layout;
        using var scope = NewDisposeScope();
        if (r.Mode != ContextMode.KvLink)
            return new Placement([.. Enumerable.Range(0, layout.Length).Select(i => (long)i)], r.CachedTokens, layout.Length, TimeSpan.Zero, TimeSpan.Zero, r.Clock.Elapsed);
        var prefixStart = r.Clock.Elapsed;
        int prefix = PlacePrefix(cache, layout);
        var prefixTime = r.Clock.Elapsed - prefixStart; // a copy, except on an engine's first request
        var transfer = c.Options.CacheTransfer;
        var (load, rerotate) = LinkTokenPass.PlaceDocuments(c.Model, cache, layout,
            [.. r.Entries.Select(e => transfer is null ? (e.Keys, e.Values) : transfer.ToDevice(e, c.Model.Device))]);
        long[] positions = layout.ComputedPositions(prefix);
        if (positions.Length == 0 || positions[^1] != layout.Length - 1)
            throw new ArgumentException("The prompt must end with segment-0 tokens (the question and generation header).");
        int computed = layout.Length - layout.DocumentTokenCount - prefix + r.OnDemandTokens;
        return new Placement(positions, r.CachedTokens + prefix, computed, load + prefixTime, rerotate, r.Clock.Elapsed);
    }

    /// <summary>The request's decode loop over its cache.</summary>
    public DecodeLoop NewLoop(Prepared r, AttentionCache cache) =>
        new(c.Model, cache, r.Options, new HashSet<int>(r.Options.StopTokenIds ?? c.Format.StopTokenIds));

    /// <summary>The result of a finished request.</summary>
    public GenerationResult Result(Prepared r, Placement p, List<int> generated, FinishReason finish, TimeSpan ttft)
    {
        var usage = new GenerationUsage(r.Layout.Length, p.Cached, p.Computed, generated.Count);
        var timings = new GenerationTimings(r.StoreTime + p.Load, p.Rerotate, ttft - p.PrefillStart + r.OnDemandTime, ttft, r.Clock.Elapsed);
        return new GenerationResult(c.Tokenizer.Decode(generated), generated, finish, usage, timings);
    }

    /// <summary>
    /// Throws when the prompt cannot fit the model's positions, from token counts alone (a compressed document counts
    /// its smallest possible size), so that no document is encoded for a request that must fail. Returns each slot's
    /// uncompressed document tokens.
    /// </summary>
    private IReadOnlyList<int>[] CheckPromptFits(string query, IReadOnlyList<KvLinkDocument> docs, int linkTokens, ContextMode mode)
    {
        var fulls = new IReadOnlyList<int>[docs.Count];
        long length = c.Format.Prefix(c.Tokenizer).Count + c.Format.Suffix(c.Tokenizer, query).Count + (long)linkTokens * docs.Count;
        for (int slot = 0; slot < docs.Count; slot++)
        {
            var full = fulls[slot] = c.Format.Document(c.Tokenizer, docs[slot], TokenSlot(slot, mode));
            double fraction = docs[slot].KeepFraction ?? c.Options.Compression.KeepFraction;
            if (fraction >= 1) { length += full.Count; continue; }
            int header = c.Format.DocumentHeaderLength(c.Tokenizer, docs[slot], TokenSlot(slot, mode));
            length += header + (long)Math.Ceiling(fraction * (full.Count - header));
        }
        int max = c.Model.Config.MaxPositionEmbeddings;
        if (length + 1 > max)
            throw new ArgumentException($"The prompt has at least {length} tokens ({docs.Count} documents); the model allows {max} positions, so at most {max - 1} prompt tokens leave room to answer.", "documentIds");
        return fulls;
    }

    /// <summary>
    /// The slot whose document tokens a document in <paramref name="slot"/> has: in KVLink mode its cache's slot
    /// (<see cref="EngineContext.CacheSlot"/>; under <see cref="SlotPolicy.Shared"/> the header numbers it 1), in full
    /// prefill its own, since nothing is reused there.
    /// </summary>
    private int TokenSlot(int slot, ContextMode mode) => mode == ContextMode.KvLink ? c.CacheSlot(slot) : slot;

    /// <summary>
    /// Writes the cache of the prompt prefix (BOS, system turn, user header, memory start) at slots 0..P-1.
    /// The prefix attends only to itself, so its cache is the same for every request: it is computed once,
    /// on the model thread, and kept. Returns P (0 when the layout has no prefix).
    /// </summary>
    private int PlacePrefix(AttentionCache cache, PromptLayout layout)
    {
        int length = layout.PrefixLength;
        if (length == 0) return 0;
        var tokens = layout.Tokens.Take(length).ToArray();
        if (_prefix is not { } p || !p.Tokens.SequenceEqual(tokens))
        {
            _prefix?.Keys.Dispose();
            _prefix?.Values.Dispose();
            var (keys, values) = DocumentEncoder.Encode(c.Model, tokens);
            _prefix = p = new PrefixCache(tokens, keys.DetachFromDisposeScope(), values.DetachFromDisposeScope());
        }
        cache.Write(0, p.Keys, p.Values);
        return length;
    }

    public void Dispose()
    {
        _prefix?.Keys.Dispose();
        _prefix?.Values.Dispose();
    }
}
