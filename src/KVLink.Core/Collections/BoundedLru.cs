namespace KVLink.Core.Collections;

/// <summary>
/// A thread-safe map that keeps at most <c>capacity</c> entries, dropping the least recently used. Small and
/// deterministic on purpose: MemoryCache compacts in the background by percentages, which makes "at most N" a
/// statement about eventually, not about now.
/// </summary>
internal sealed class BoundedLru<TKey, TValue>(int capacity) where TKey : notnull
{
    private readonly Dictionary<TKey, LinkedListNode<(TKey Key, TValue Value)>> _map = [];
    private readonly LinkedList<(TKey Key, TValue Value)> _order = new(); // most recent first
    private readonly Lock _gate = new();

    /// <summary>Most entries kept.</summary>
    public int Capacity { get; } = capacity > 0 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "The capacity must be positive.");

    /// <summary>Entries now.</summary>
    public int Count { get { lock (_gate) return _map.Count; } }

    public bool TryGetValue(TKey key, out TValue value)
    {
        lock (_gate)
        {
            if (_map.TryGetValue(key, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                value = node.Value.Value;
                return true;
            }
        }
        value = default!;
        return false;
    }

    public void Set(TKey key, TValue value)
    {
        lock (_gate)
        {
            if (_map.Remove(key, out var old)) _order.Remove(old);
            _map[key] = _order.AddFirst((key, value));
            while (_map.Count > Capacity)
            {
                var last = _order.Last!;
                _order.RemoveLast();
                _map.Remove(last.Value.Key);
            }
        }
    }

    public TValue GetOrAdd(TKey key, Func<TKey, TValue> create)
    {
        if (TryGetValue(key, out var value)) return value;
        value = create(key);
        Set(key, value);
        return value;
    }

    public void Remove(TKey key)
    {
        lock (_gate)
            if (_map.Remove(key, out var node)) _order.Remove(node);
    }
}
