using KVLink.Core.Caching;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// The conversations' kept caches: what a conversation computed after its documents (its turns and answers), kept in
/// memory (<see cref="SessionLru"/>, LRU under <see cref="KvLinkOptions.SessionCacheBytes"/>) and, with
/// <see cref="KvLinkOptions.PersistSessions"/>, in the store for other replicas, so that the next turn computes only its
/// new tokens. Touched on the model thread, except <see cref="Key"/> and <see cref="ReadPersistedAsync"/>.
/// </summary>
internal sealed class ConversationSessions(EngineContext c) : IDisposable
{
    private readonly SessionLru _inMemory = new(c.Options.SessionCacheBytes);

    /// <summary>Sessions kept in memory now.</summary>
    public SessionLru InMemory => _inMemory;

    /// <summary>
    /// Writes the conversation's kept keys and values after the documents, for as many tokens as the kept conversation and
    /// this prompt share (at least one prompt token is always computed, for its logits). Returns how many were reused.
    /// Exact: a token is reused only when it and every token before it are the ones the kept cache was computed for.
    /// </summary>
    public int Place(AttentionCache cache, string? key, PromptLayout layout, int documentsEnd)
    {
        if (key is null || !_inMemory.Enabled || _inMemory.Get(key) is not { } s || s.Start != documentsEnd) return 0;
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

    /// <summary>A session read from the store (<paramref name="entry"/>, disposed here) becomes this replica's kept session
    /// under <paramref name="key"/>, unless one was kept meanwhile. Model thread.</summary>
    public void Adopt(string? key, DocumentKvCache? entry)
    {
        if (entry is null) return;
        using (entry)
            if (key is not null && _inMemory.Get(key) is null && SessionPersistence.FromEntry(c, key, entry) is { } session)
                _inMemory.Set(key, session);
    }

    /// <summary>
    /// The conversation's kept cache from the store, when sessions persist and this replica holds none under
    /// <paramref name="key"/> (another replica may have kept it); else null. The caller owns the entry.
    /// </summary>
    public async Task<DocumentKvCache?> ReadPersistedAsync(string key, CancellationToken ct) =>
        c.Options.PersistSessions && _inMemory.Enabled && !_inMemory.Holds(key)
            ? await c.Store.GetAsync(SessionPersistence.Key(c, key), ct).ConfigureAwait(false) : null;

    /// <summary>Keeps the conversation's cache after its documents: the prompt and the fed answer tokens; with
    /// <see cref="KvLinkOptions.PersistSessions"/> also writes it to the store, off the model thread.</summary>
    public void Keep(AttentionCache cache, string key, PromptLayout layout, IReadOnlyList<int> generated, int filled, int documentsEnd)
    {
        // With int8 decoding the answer's keys and values came from int8 decode rows, which a recompute computes as
        // full-precision prompt rows: only the prompt is kept, and the next turn computes the answer's tokens again as
        // one prompt chunk (a forward of the answer's length), so a continued turn equals recomputing the conversation.
        if (c.Options.DecodeWithInt8Weights) filled = Math.Min(filled, layout.Length);
        if (!_inMemory.Enabled || filled <= documentsEnd) return;
        int[] tokens = [.. layout.Tokens.Concat(generated).Take(filled)];
        using var scope = NewDisposeScope();
        var (k, v) = cache.Export(documentsEnd, filled - documentsEnd);
        var session = new SessionLru.Session(tokens, documentsEnd, k.DetachFromDisposeScope(), v.DetachFromDisposeScope());
        var entry = c.Options.PersistSessions ? SessionPersistence.ToEntry(c, key, session) : null; // before Set: it may evict
        _inMemory.Set(key, session);
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
    public (string Key, string Id) Key(ConversationPrompt conversation, IReadOnlyList<string> documentIds, KvLinkGenerationOptions? options, ContextMode mode, int linkTokens)
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

    public void Dispose() => _inMemory.Dispose();
}
