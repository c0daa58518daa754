using System.Globalization;
using KVLink.Core.Caching;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// A conversation's kept cache written to and read from the engine's <see cref="IKvCacheStore"/>
/// (<see cref="KvLinkOptions.PersistSessions"/>), so that another replica sharing the store continues the conversation
/// computing only its new tokens. The entry rides in the store's ordinary entry type: its id is <c>~session~</c> plus the
/// session key (a single <c>~</c> never starts a caller's escaped id, so it cannot collide with a document), its token ids
/// and tensors are the kept cache positions [Start, End), and its text holds Start and the token ids before Start, which the next
/// turn must match exactly before anything is reused. Keys are rotated at their absolute positions, so no RoPE metadata
/// is recorded (a store that quantises keys refuses such an entry; the conversation is then recomputed elsewhere).
/// </summary>
internal static class SessionPersistence
{
    private const string IdPrefix = "~session~";

    public static KvCacheKey Key(EngineContext c, string sessionKey) =>
        new(c.Options.Tenant, c.Fingerprint, c.Format.Name, IdPrefix + sessionKey, 0);

    /// <summary>The store entry of a kept session (its own tensor handles; the caller disposes it).</summary>
    public static DocumentKvCache ToEntry(EngineContext c, string sessionKey, SessionLru.Session s)
    {
        string text = s.Start.ToString(CultureInfo.InvariantCulture) + ":" + string.Join(',', s.Tokens.Take(s.Start));
        return new DocumentKvCache(IdPrefix + sessionKey, 0, s.Tokens[s.Start..], s.Keys.alias().DetachFromDisposeScope(), s.Values.alias().DetachFromDisposeScope(),
            c.Fingerprint, c.Format.Name, title: null, text, c.Options.Tenant);
    }

    /// <summary>
    /// The session a stored entry holds, or null when it is not one this engine can use (another key, model, format or
    /// shape, or unparsable): a bad entry is a miss, and the conversation is recomputed exactly. Takes its own tensor handles.
    /// </summary>
    public static SessionLru.Session? FromEntry(EngineContext c, string sessionKey, DocumentKvCache entry)
    {
        if (entry.Key != Key(c, sessionKey)) return null;
        int colon = entry.Text.IndexOf(':');
        if (colon <= 0 || !int.TryParse(entry.Text.AsSpan(0, colon), NumberStyles.None, CultureInfo.InvariantCulture, out int start)) return null;
        // Bounded by the entry's real size before anything is allocated: a stored entry is untrusted, and its start is
        // only a claim. A kept conversation fits the model's positions, and each token id before Start takes at least
        // one character and a separator of the text that is really there.
        var config = c.Model.Config;
        int vocab = config.VocabSize;
        if (start <= 0 || (long)start + entry.Length > config.MaxPositionEmbeddings || start > (entry.Text.Length - colon) / 2 + 1) return null;
        var before = new List<int>(start);
        foreach (var range in entry.Text.AsSpan(colon + 1).Split(','))
        {
            var t = entry.Text.AsSpan(colon + 1)[range];
            if (t.IsEmpty) continue;
            if (before.Count == start || !int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || id >= vocab) return null;
            before.Add(id);
        }
        long[] shape = [config.NumHiddenLayers, config.NumKeyValueHeads, entry.Length, config.HeadDim];
        if (before.Count != start || entry.Length == 0 || entry.TokenIds.Any(id => id < 0 || id >= vocab) || !entry.Keys.shape.SequenceEqual(shape) || entry.Keys.dtype != c.Model.DType
            || !CacheEntryCheck.AllFinite(entry.Keys) || !CacheEntryCheck.AllFinite(entry.Values))
            return null;
        return new SessionLru.Session([.. before, .. entry.TokenIds], start,
            entry.Keys.alias().DetachFromDisposeScope(), entry.Values.alias().DetachFromDisposeScope()); // outlive the caller's dispose scope
    }
}
