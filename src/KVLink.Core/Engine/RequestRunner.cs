using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Request preparation: <c>PrepareAsync</c> tokenizes the request once (<see cref="RequestTokens"/>), checks its length,
/// resolves the documents and their caches (encoding a missing one through the scheduler) and the prompt prefix, off the
/// model thread; <see cref="Start"/> then hands the request to its owner, a <see cref="GenerationSequence"/> in the
/// <see cref="BatchScheduler"/>, which places the caches, computes its rows batched with other requests, decodes and
/// completes it. Prompt prefixes and conversations' kept caches, which requests share, live in <see cref="PromptPrefixes"/>
/// and <see cref="ConversationSessions"/>.
/// </summary>
internal sealed class RequestRunner(EngineContext c, DocumentKvSource documents) : IDisposable
{
    // The prompt prefixes' caches: the format's own prefix is the same for every one-shot request; conversations with
    // system content each have theirs.
    private readonly PromptPrefixes _prefixes = new(c);

    private readonly ConversationSessions _sessions = new(c);

    /// <summary>The conversations' kept caches.</summary>
    public ConversationSessions Sessions => _sessions;

    public Task<PreparedRequest> PrepareAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(query)) throw new ArgumentException("The query is empty.", nameof(query));
        return PrepareAsync(ConversationPrompt.Single(query), documentIds, options, clock, ct);
    }

    public async Task<PreparedRequest> PrepareAsync(ConversationPrompt conversation, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct,
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
            // Every text of the request tokenized once, here; the length check, cache lookups, encodes and layout reuse them.
            var (docs, tokens) = await TokenizeAsync(conversation, documentIds, mode, fetched, ct).ConfigureAwait(false);
            // The whole prompt's length is known from the tokens: refuse a prompt that cannot fit before encoding anything.
            int max = c.Model.Config.MaxPositionEmbeddings;
            if (tokens.MinimumLength(k) is var least && least + 1 > max)
                throw new ArgumentException($"The prompt has at least {least} tokens ({docs.Length} documents); the model allows {max} positions, so at most {max - 1} prompt tokens leave room to answer.", nameof(documentIds));

            var documentTokens = new List<IReadOnlyList<int>>();
            var entries = new List<DocumentKvCache>();
            int cached = 0, onDemand = 0;
            var onDemandTime = TimeSpan.Zero; // encoding slots that were not cached yet is prefill work, not cache loading
            if (mode == ContextMode.KvLink)
                for (int slot = 0; slot < docs.Length; slot++)
                {
                    var started = clock.Elapsed;
                    var (entry, computed) = await documents.GetOrEncodeAsync(documentIds[slot], docs[slot], slot, fetched, ct, countBytes: true, tokens.Documents[slot]).ConfigureAwait(false);
                    entries.Add(entry);
                    documentTokens.Add(entry.TokenIds);
                    if (computed) { onDemand += entry.Length; onDemandTime += clock.Elapsed - started; }
                    else cached += entry.Length;
                }
            else documentTokens = await DocumentTokensAsync(documentIds, docs, tokens, ct).ConfigureAwait(false);
            var layout = tokens.Layout(c.Format, documentTokens, k);
            if (layout.Length + 1 > max)
                throw new ArgumentException($"The prompt has {layout.Length} tokens; the model allows {max} positions, so at most {max - 1} prompt tokens leave room to answer.", nameof(documentIds));
            // The prompt prefix, like a document, is encoded once through the scheduler before the request is queued.
            if (mode == ContextMode.KvLink) await _prefixes.EnsureAsync(layout.Tokens, layout.PrefixLength, ct).ConfigureAwait(false);
            var session = keepSession ? _sessions.Key(conversation, documentIds, gen as KvLinkGenerationOptions, mode, k) : default;
            // Another replica may have kept this conversation: read its cache only when this one holds none.
            var persisted = session.Key is { } sk && mode == ContextMode.KvLink ? await _sessions.ReadPersistedAsync(sk, ct).ConfigureAwait(false) : null;
            return new PreparedRequest(layout, mode, gen, entries, cached, onDemand, clock.Elapsed - onDemandTime, onDemandTime, clock)
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
        var (docs, tokens) = await TokenizeAsync(ConversationPrompt.Single(query), documentIds, mode, null, ct).ConfigureAwait(false);
        return tokens.Layout(c.Format, await DocumentTokensAsync(documentIds, docs, tokens, ct).ConfigureAwait(false), linkTokens);
    }

    /// <summary>
    /// Resolves the request's documents and tokenizes each text of it once (<see cref="RequestTokens"/>), each document in
    /// its <see cref="TokenSlot"/>. Entries read while resolving another process's documents are kept in
    /// <paramref name="fetched"/> when it is given, so that the cache lookup does not read them again.
    /// </summary>
    private async Task<(KvLinkDocument[] Documents, RequestTokens Tokens)> TokenizeAsync(ConversationPrompt conversation, IReadOnlyList<string> documentIds,
        ContextMode mode, Dictionary<KvCacheKey, DocumentKvCache>? fetched, CancellationToken ct)
    {
        var docs = new KvLinkDocument[documentIds.Count];
        for (int slot = 0; slot < docs.Length; slot++)
            docs[slot] = await documents.ResolveAsync(documentIds[slot], fetched, ct).ConfigureAwait(false);
        return (docs, documents.Tokenize(conversation, docs, slot => TokenSlot(slot, mode)));
    }

    /// <summary>Every document's tokens in the prompt, from the request's <paramref name="tokens"/> (compressed where the
    /// document is), without reading or encoding any cache: full prefill, and a layout alone.</summary>
    private async Task<List<IReadOnlyList<int>>> DocumentTokensAsync(IReadOnlyList<string> documentIds, KvLinkDocument[] docs, RequestTokens tokens, CancellationToken ct)
    {
        var documentTokens = new List<IReadOnlyList<int>>(docs.Length);
        for (int slot = 0; slot < docs.Length; slot++)
            documentTokens.Add(await documents.TokensAsync(documentIds[slot], docs[slot], tokens.Documents[slot], ct).ConfigureAwait(false));
        return documentTokens;
    }

    /// <summary>
    /// Queues a prepared request in the scheduler; it joins the running batch at the next step that has room. Cancelled
    /// while queued it never runs; cancelled later, it leaves between two steps. Each token goes through a
    /// <see cref="TextEmitter"/> (clean text, stop sequences), whose deltas reach <paramref name="onUpdate"/> on the model thread,
    /// each with the logprobs of the tokens decoded since the previous delta when the options ask for logprobs.
    /// </summary>
    public Task<GenerationResult> Start(PreparedRequest r, Action<GenerationUpdate>? onUpdate, CancellationToken ct)
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
        var sequence = new GenerationSequence(c, _prefixes, _sessions, r, new TextEmitter(c.Tokenizer, r.Options, onDelta), logprobs, ct);
        c.Worker.Scheduler.Submit(sequence);
        return sequence.Task;
    }

    /// <summary>
    /// Encodes the format's own prompt prefix (the one every question without system content shares) through the
    /// scheduler and keeps it, so that the engine is ready when it is created: no request waits for it, and every one
    /// places it. Blocks the caller until it is kept (one forward of a few dozen tokens).
    /// </summary>
    public void KeepDefaultPrefix()
    {
        var prefix = c.Format.Prefix(c.Tokenizer);
        _prefixes.EnsureAsync(prefix, prefix.Count, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>The logprob collector of a request, or null when it asks for none.</summary>
    public TokenLogprobs? NewLogprobs(PreparedRequest r) => r.Options.Logprobs ? new TokenLogprobs(c.Tokenizer, r.Options.TopLogprobs) : null;

    /// <summary>
    /// The slot whose document tokens a document in <paramref name="slot"/> has: in KVLink mode its stored entry's slot
    /// (<see cref="EngineContext.StoredSlot"/>; under <see cref="SlotPolicy.Shared"/> the header numbers it 1), in full
    /// prefill its own, since nothing is reused there.
    /// </summary>
    private int TokenSlot(int slot, ContextMode mode) => mode == ContextMode.KvLink ? c.StoredSlot(slot) : slot;

    public void Dispose()
    {
        _sessions?.Dispose();
        _prefixes.Dispose();
    }
}
