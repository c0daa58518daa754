using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// The in-memory part of <see cref="ConversationSessions"/>: each conversation's kept keys and values, under a byte
/// budget, least recently used dropped first.
/// An entry holds the token ids of everything its last turn put in the cache and the keys and values of the cache
/// positions from <see cref="Session.Start"/> (the end of the last document) on; the prompt prefix and the documents come from
/// their own caches. Touched only on the model thread, so it needs no lock; the tensors live outside any dispose scope.
/// </summary>
internal sealed class SessionLru(long budgetBytes) : IDisposable
{
    /// <summary>A conversation's kept cache: <paramref name="Tokens"/>[0..End) in the cache, K/V of positions [Start, End).</summary>
    public sealed record Session(int[] Tokens, int Start, Tensor Keys, Tensor Values) : IDisposable
    {
        public int End => Tokens.Length;
        public long Bytes => Keys.NumberOfElements * Keys.ElementSize + Values.NumberOfElements * Values.ElementSize;
        public void Dispose() { Keys.Dispose(); Values.Dispose(); }
    }

    private readonly Dictionary<string, LinkedListNode<(string Key, Session Value)>> _map = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Key, Session Value)> _order = new(); // most recent first
    // The keys held now, readable from any thread: a request being prepared reads a persisted session from the store only
    // when this replica does not hold it (a stale answer costs one store read or one recomputed turn, never a wrong one).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _held = new(StringComparer.Ordinal);

    /// <summary>True when a session is held under <paramref name="key"/> (any thread).</summary>
    public bool Holds(string key) => _held.ContainsKey(key);

    /// <summary>Bytes held now.</summary>
    public long Bytes { get; private set; }

    /// <summary>Conversations held now.</summary>
    public int Count => _map.Count;

    /// <summary>True when sessions are kept at all.</summary>
    public bool Enabled => budgetBytes > 0;

    /// <summary>The session under <paramref name="key"/>, marked most recently used; null when none.</summary>
    public Session? Get(string key)
    {
        if (!_map.TryGetValue(key, out var node)) return null;
        _order.Remove(node);
        _order.AddFirst(node);
        return node.Value.Value;
    }

    /// <summary>Stores (replacing) a session; drops least recently used ones to stay within the budget. A session larger
    /// than the whole budget is not kept (disposed at once).</summary>
    public void Set(string key, Session session)
    {
        Remove(key);
        if (session.Bytes > budgetBytes) { session.Dispose(); return; }
        _map[key] = _order.AddFirst((key, session));
        _held[key] = 0;
        Bytes += session.Bytes;
        while (Bytes > budgetBytes && _order.Last is { } last) Remove(last.Value.Key);
    }

    /// <summary>Drops and disposes the session under <paramref name="key"/>, if any.</summary>
    public void Remove(string key)
    {
        if (!_map.Remove(key, out var node)) return;
        _held.TryRemove(key, out _);
        _order.Remove(node);
        Bytes -= node.Value.Value.Bytes;
        node.Value.Value.Dispose();
    }

    public void Dispose()
    {
        foreach (var (_, s) in _order) s.Dispose();
        _order.Clear();
        _map.Clear();
        _held.Clear();
        Bytes = 0;
    }
}
