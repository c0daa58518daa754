using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Request execution: <c>PrepareAsync</c> resolves the documents and their caches off the model thread;
/// on the model thread, a <see cref="GenerationSequence"/> in the <see cref="BatchScheduler"/> uses <see cref="Place"/>
/// (the caches placed, or nothing for full prefill; a conversation's kept cache reused), runs its computed tokens
/// batched with other requests, and decodes. Prompt prefixes, which requests share, are kept in <see cref="PromptPrefixes"/>.
/// </summary>
internal sealed class RequestRunner(EngineContext c, DocumentCaches documents) : IDisposable
{
    // The prompt prefixes' caches: the format's own prefix is the same for every one-shot request; conversations with
    // system content each have theirs.
    private readonly PromptPrefixes _prefixes = new(c);

    /// <summary>Everything a request needs before it reaches the model thread.</summary>
    public sealed record Prepared(
        PromptLayout Layout, ContextMode Mode, GenerationOptions Options, IReadOnlyList<DocumentKvCache> Entries,
        int CachedTokens, int OnDemandTokens, TimeSpan StoreTime, TimeSpan OnDemandTime, Stopwatch Clock)
    {
        /// <summary>The key of the conversation's kept cache (chat requests), or null (one-shot questions keep none).</summary>
        public string? SessionKey { get; init; }

        /// <summary>The conversation's id (the caller's, or the derived one), or null.</summary>
        public string? ConversationId { get; init; }

        /// <summary>The conversation's kept cache read from the store (<see cref="KvLinkOptions.PersistSessions"/>) when this
        /// replica held none, or null. Owned by the request: <see cref="Place"/> takes its tensors and disposes it.</summary>
        public DocumentKvCache? PersistedSession { get; init; }
    }

    // Touched only on the model thread, except Holds (any thread).
    private readonly SessionCache _sessions = new(c.Options.SessionCacheBytes);

    /// <summary>Sessions kept now (tests and diagnostics).</summary>
    public SessionCache Sessions => _sessions;

    public Task<Prepared> PrepareAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(query)) throw new ArgumentException("The query is empty.", nameof(query));
        return PrepareAsync(ConversationPrompt.Single(query), documentIds, options, clock, ct);
    }

    public async Task<Prepared> PrepareAsync(ConversationPrompt conversation, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct,
        bool keepSession = false)
    {
        string query = conversation.Question;
        if (string.IsNullOrWhiteSpace(query)) throw new ArgumentException("The question (last user message) is empty.", nameof(conversation));
        ArgumentNullException.ThrowIfNull(documentIds);
        for (int i = 0; i < documentIds.Count; i++)
            if (string.IsNullOrWhiteSpace(documentIds[i])) throw new ArgumentException($"Document id #{i} is empty.", nameof(documentIds));

        var gen = options ?? c.Options.Generation;
        gen.Validate();
        if ((gen as KvLinkGenerationOptions)?.CacheSalt is { Length: 0 })
            throw new ArgumentException("KvLinkGenerationOptions.CacheSalt is empty: leave it null for no salt, or give the caller's secret.", nameof(options));
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
            var fullTokens = CheckPromptFits(conversation, docs, k, mode); // tokenized once: the entry checks below reuse them

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
            var layout = c.Format.Build(c.Tokenizer, tokens, conversation, k);
            int max = c.Model.Config.MaxPositionEmbeddings;
            if (layout.Length + 1 > max)
                throw new ArgumentException($"The prompt has {layout.Length} tokens; the model allows {max} positions, so at most {max - 1} prompt tokens leave room to answer.", nameof(documentIds));
            // The prompt prefix, like a document, is encoded once through the scheduler before the request is queued.
            if (mode == ContextMode.KvLink) await _prefixes.EnsureAsync(layout.Tokens, layout.PrefixLength, ct).ConfigureAwait(false);
            var session = keepSession ? SessionKey(conversation, documentIds, gen as KvLinkGenerationOptions, mode, k) : default;
            // Another replica may have kept this conversation: read its cache only when this one holds none.
            var persisted = session.Key is { } sk && mode == ContextMode.KvLink && c.Options.PersistSessions && Sessions.Enabled && !Sessions.Holds(sk)
                ? await c.Store.GetAsync(SessionPersistence.Key(c, sk), ct).ConfigureAwait(false) : null;
            return new Prepared(layout, mode, gen, entries, cached, onDemand, clock.Elapsed - onDemandTime, onDemandTime, clock)
                { SessionKey = session.Key, ConversationId = session.Id, PersistedSession = persisted };
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
    /// while queued it never runs; cancelled later, it leaves between two steps. Each token goes through a
    /// <see cref="TextEmitter"/> (clean text, stop sequences), whose deltas reach <paramref name="onUpdate"/> on the model thread,
    /// each with the logprobs of the tokens decoded since the previous delta when the options ask for logprobs.
    /// </summary>
    public Task<GenerationResult> Start(Prepared r, Action<GenerationUpdate>? onUpdate, CancellationToken ct)
    {
        var logprobs = NewLogprobs(r);
        int delivered = 0;
        // Runs inside the emitter's Push, after the decode loop recorded the token's logprob: a copy of the entries not yet
        // delivered travels with the delta (the list itself keeps growing on the model thread).
        Action<string>? onDelta = onUpdate is null ? null : delta =>
        {
            IReadOnlyList<TokenLogprob>? since = null;
            if (logprobs is not null)
            {
                since = [.. logprobs.Items.Skip(delivered)];
                delivered = logprobs.Items.Count;
            }
            onUpdate(new GenerationUpdate(delta) { Logprobs = since });
        };
        var sequence = new GenerationSequence(this, r, new TextEmitter(c.Tokenizer, r.Options, onDelta), logprobs, ct);
        c.Worker.Scheduler.Submit(sequence);
        return sequence.Task;
    }

    /// <summary>Cache positions a request needs: its prompt and its answer, within the model's positions.</summary>
    // Long arithmetic: MaxNewTokens = int.MaxValue means "until a stop token or the end of the context".
    public int Capacity(Prepared r) => (int)Math.Min((long)r.Layout.Length + r.Options.MaxNewTokens, c.Model.Config.MaxPositionEmbeddings);

    /// <summary>The request's attention cache (model thread; the caller disposes it).</summary>
    public AttentionCache NewCache(Prepared r) => new(c.Model.Config, Capacity(r), c.Model.DType, c.Model.Device);

    /// <summary>
    /// What placing a request's caches did: the prompt positions left to compute, token accounting and times, and where
    /// the documents end (a conversation's kept cache starts there).
    /// </summary>
    public sealed record Placement(long[] Positions, int Cached, int Computed, TimeSpan Load, TimeSpan Rerotate, TimeSpan PrefillStart, int DocumentsEnd)
    {
        /// <summary>The prompt prefix's length when it was not kept yet: its rows are computed first, in the scheduler's
        /// steps like every other row, and <see cref="KeepPrefix"/> keeps them once computed; else 0.</summary>
        public int PrefixToKeep { get; init; }
    }

    /// <summary>
    /// On the model thread: KVLink places the prefix and document caches (re-rotated) and the conversation's kept cache,
    /// and leaves the other segment-0 tokens to compute; full prefill leaves every token to compute.
    /// </summary>
    public Placement Place(Prepared r, AttentionCache cache)
    {
        var layout = r.Layout;
        using var scope = NewDisposeScope();
        if (r.Mode != ContextMode.KvLink)
            return new Placement([.. Enumerable.Range(0, layout.Length).Select(i => (long)i)], r.CachedTokens, layout.Length, TimeSpan.Zero, TimeSpan.Zero, r.Clock.Elapsed, 0);
        var prefixStart = r.Clock.Elapsed;
        // 0 when the prefix was evicted since the request was prepared: then its rows are computed in the request's steps.
        int prefix = _prefixes.Place(cache, layout.Tokens, layout.PrefixLength);
        var prefixTime = r.Clock.Elapsed - prefixStart; // a copy
        var transfer = c.Options.CacheTransfer;
        var (load, rerotate) = DocumentPlacement.Place(c.Model, cache, layout,
            [.. r.Entries.Select(e => transfer is null ? (e.Keys, e.Values) : transfer.ToDevice(e, c.Model.Device))]);
        int documentsEnd = layout.Documents.Count > 0 ? layout.Documents[^1].Start + layout.Documents[^1].Length : prefix;
        var sessionStart = r.Clock.Elapsed;
        AdoptPersisted(r);
        int reused = PlaceSession(cache, r.SessionKey, layout, documentsEnd);
        load += prefixTime + (r.Clock.Elapsed - sessionStart);
        // Everything segment-0 after the prefix, except the conversation's kept tokens [documentsEnd, documentsEnd + reused).
        long[] positions = [.. layout.ComputedPositions(prefix).Where(p => p < documentsEnd || p >= documentsEnd + reused)];
        if (positions.Length == 0 || positions[^1] != layout.Length - 1)
            throw new ArgumentException("The prompt must end with segment-0 tokens (the question and generation header).");
        return new Placement(positions, r.CachedTokens + prefix + reused, positions.Length + r.OnDemandTokens, load, rerotate, r.Clock.Elapsed, documentsEnd)
            { PrefixToKeep = prefix == 0 ? layout.PrefixLength : 0 };
    }

    /// <summary>The request's decode loop over its cache, collecting logprobs when the options ask for them.</summary>
    public DecodeLoop NewLoop(Prepared r, AttentionCache cache, TokenLogprobs? logprobs) =>
        new(c.Model, cache, r.Options, new HashSet<int>(r.Options.StopTokenIds ?? c.Format.StopTokenIds), logprobs);

    /// <summary>The logprob collector of a request, or null when it asks for none.</summary>
    public TokenLogprobs? NewLogprobs(Prepared r) => r.Options.Logprobs ? new TokenLogprobs(c.Tokenizer, r.Options.TopLogprobs) : null;

    /// <summary>
    /// The result of a finished request (model thread). A conversation keeps its cache after the documents:
    /// the first <paramref name="filled"/> slots hold the prompt and the answer tokens fed back.
    /// </summary>
    public GenerationResult Result(Prepared r, Placement p, AttentionCache cache, List<int> generated, int filled, FinishReason finish,
        TimeSpan ttft, TextEmitter emitter, TokenLogprobs? logprobs)
    {
        emitter.Finish();
        if (r.SessionKey is { } key && r.Mode == ContextMode.KvLink) KeepSession(cache, key, r.Layout, generated, filled, p.DocumentsEnd);
        var usage = new GenerationUsage(r.Layout.Length, p.Cached, p.Computed, generated.Count);
        var timings = new GenerationTimings(r.StoreTime + p.Load, p.Rerotate, ttft - p.PrefillStart + r.OnDemandTime, ttft, r.Clock.Elapsed);
        return new GenerationResult(emitter.Text, generated, finish, usage, timings)
        {
            PromptTokenIds = r.Layout.Tokens,
            Logprobs = logprobs?.Items,
            ConversationId = r.ConversationId,
        };
    }

    /// <summary>
    /// Writes the conversation's kept keys and values after the documents, for as many tokens as the kept conversation and
    /// this prompt share (at least one prompt token is always computed, for its logits). Returns how many were reused.
    /// Exact: a token is reused only when it and every token before it are the ones the kept cache was computed for.
    /// </summary>
    private int PlaceSession(AttentionCache cache, string? key, PromptLayout layout, int documentsEnd)
    {
        if (key is null || !Sessions.Enabled || Sessions.Get(key) is not { } s || s.Start != documentsEnd) return 0;
        int limit = Math.Min(s.End, layout.Length - 1), common = 0;
        while (common < limit && s.Tokens[common] == layout.Tokens[common]) common++;
        int reused = common - documentsEnd;
        if (reused <= 0) return 0;
        using var scope = NewDisposeScope();
        cache.Write(documentsEnd, s.Keys.narrow(2, 0, reused), s.Values.narrow(2, 0, reused));
        return reused;
    }

    private volatile Task _sessionWrites = Task.CompletedTask; // replaced only on the model thread

    /// <summary>Completes when every session write started so far has ended (tests; dispose does not wait for them).</summary>
    public Task SessionWrites => _sessionWrites;

    /// <summary>A session read from the store becomes this replica's kept session, unless one was kept meanwhile.</summary>
    private void AdoptPersisted(Prepared r)
    {
        if (r.PersistedSession is not { } entry) return;
        using (entry)
            if (r.SessionKey is { } key && Sessions.Get(key) is null && SessionPersistence.FromEntry(c, key, entry) is { } session)
                Sessions.Set(key, session);
    }

    /// <summary>Keeps the conversation's cache after its documents: the prompt and the fed answer tokens; with
    /// <see cref="KvLinkOptions.PersistSessions"/> also writes it to the store, off the model thread.</summary>
    private void KeepSession(AttentionCache cache, string key, PromptLayout layout, IReadOnlyList<int> generated, int filled, int documentsEnd)
    {
        // With int8 decoding the answer's keys and values came from int8 decode rows, which a recompute computes as
        // full-precision prompt rows: only the prompt is kept, and the next turn computes the answer's tokens again as
        // one prompt chunk (a forward of the answer's length), so a continued turn equals recomputing the conversation.
        if (c.Options.DecodeWithInt8Weights) filled = Math.Min(filled, layout.Length);
        if (!Sessions.Enabled || filled <= documentsEnd) return;
        int[] tokens = [.. layout.Tokens.Concat(generated).Take(filled)];
        using var scope = NewDisposeScope();
        var (k, v) = cache.Export(documentsEnd, filled - documentsEnd);
        var session = new SessionCache.Session(tokens, documentsEnd, k.DetachFromDisposeScope(), v.DetachFromDisposeScope());
        var entry = c.Options.PersistSessions ? SessionPersistence.ToEntry(c, key, session) : null; // before Set: it may evict
        Sessions.Set(key, session);
        if (entry is not null)
        {
            var write = PersistAsync(key, entry);
            _sessionWrites = _sessionWrites.IsCompleted ? write : Task.WhenAll(_sessionWrites, write);
        }
    }

    /// <summary>
    /// Writes a kept session to the store. Best effort: a failed write leaves other replicas recomputing the conversation's
    /// turns exactly, so it is logged, never thrown into the answer that produced it.
    /// </summary>
    private async Task PersistAsync(string key, DocumentKvCache entry)
    {
        using (entry)
        {
            try { await c.Store.PutAsync(entry.Key, entry).ConfigureAwait(false); }
            catch (Exception e) { c.Telemetry.SessionPersistFailed(key, e); }
        }
    }

    /// <summary>
    /// The conversation's id and the key of its kept cache. The id is the caller's, or else one derived from the conversation's
    /// start (system content, documents, first question), which stays the same over its turns; the key adds tenant, model,
    /// format, mode, link tokens and the caller's <see cref="KvLinkGenerationOptions.CacheSalt"/>, so a session is never served
    /// to another tenant, model or salt. A derived id is known to anyone who knows the conversation's start; the salt is what
    /// a caller of the same tenant cannot guess, so a probe under another salt misses (and, keyed apart, never replaces the
    /// kept session). Only the hash of the salt is kept, in the key.
    /// </summary>
    private (string Key, string Id) SessionKey(ConversationPrompt conversation, IReadOnlyList<string> documentIds, KvLinkGenerationOptions? options, ContextMode mode, int linkTokens)
    {
        string id = options?.ConversationId ?? "auto-" + Hash(["auto", conversation.SystemText ?? "", .. documentIds,
            conversation.History.Count > 0 ? conversation.History[0].User : conversation.Question]);
        List<string> parts = [c.Options.Tenant, c.Fingerprint, c.Format.Name, mode.ToString(), linkTokens.ToString(System.Globalization.CultureInfo.InvariantCulture)];
        // Without a salt the parts are those of earlier versions, so their persisted sessions stay found; with one, the part
        // list is longer, and length-prefixed parts make every different list hash different bytes.
        if (options?.CacheSalt is { } salt) parts.AddRange(["salt", salt]);
        parts.Add(id);
        return (Hash(parts), id);

        static string Hash(IEnumerable<string> parts)
        {
            // Length-prefixed parts: no two different part lists give the same bytes.
            var text = new System.Text.StringBuilder();
            foreach (string p in parts) text.Append(p.Length).Append(':').Append(p);
            return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(text.ToString())))[..32];
        }
    }

    /// <summary>
    /// Throws when the prompt cannot fit the model's positions, from token counts alone (a compressed document counts
    /// its smallest possible size), so that no document is encoded for a request that must fail. Returns each slot's
    /// uncompressed document tokens.
    /// </summary>
    private IReadOnlyList<int>[] CheckPromptFits(ConversationPrompt conversation, IReadOnlyList<KvLinkDocument> docs, int linkTokens, ContextMode mode)
    {
        var fulls = new IReadOnlyList<int>[docs.Count];
        long length = c.Format.ConversationPrefix(c.Tokenizer, conversation.SystemText).Count
            + c.Format.ConversationSuffix(c.Tokenizer, conversation.History, conversation.Question).Count + (long)linkTokens * docs.Count;
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

    /// <summary>Keeps the prompt prefix a request computed in its own steps (<see cref="Placement.PrefixToKeep"/>). Model thread.</summary>
    public void KeepPrefix(PromptLayout layout, AttentionCache cache) => _prefixes.Keep(cache, layout.Tokens, layout.PrefixLength);

    public void Dispose()
    {
        _sessions?.Dispose();
        _prefixes.Dispose();
    }
}
