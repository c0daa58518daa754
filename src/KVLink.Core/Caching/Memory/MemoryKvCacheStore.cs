using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KVLink.Core.Caching;

/// <summary>
/// An in-process store with a byte budget, LRU/LFU/cost-aware eviction and pinning. Ownership: the store
/// keeps its own tensor handles (<see cref="DocumentKvCache.Share"/>) and hands every reader its own, so
/// evicting or replacing an entry disposes only the store's handles; LibTorch frees the memory when the
/// last reader's handle goes too. Nothing a concurrent request is reading is ever freed under it.
/// </summary>
public sealed class MemoryKvCacheStore : IKvCacheStore, IKvCacheStoreInvalidation, IDisposable
{
    private sealed class Node(DocumentKvCache entry, long tick)
    {
        public DocumentKvCache Entry { get; } = entry;
        public long Bytes { get; } = entry.ByteSize;
        public long LastUse { get; set; } = tick;
        public long Hits { get; set; }
    }

    private readonly Dictionary<string, Node> _entries = new(StringComparer.Ordinal);
    private readonly HashSet<string> _pinned = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private readonly StoreCounters _counters = new();
    private readonly MemoryKvCacheStoreOptions _options;
    private readonly ILogger _logger;
    private long _tick, _bytes;

    /// <summary>Creates a store (unbounded unless <paramref name="options"/> sets a budget).</summary>
    public MemoryKvCacheStore(MemoryKvCacheStoreOptions? options = null)
    {
        _options = options ?? new MemoryKvCacheStoreOptions();
        if (_options.ByteBudget < 0)
            throw new ArgumentOutOfRangeException("options.ByteBudget", _options.ByteBudget, "MemoryKvCacheStoreOptions.ByteBudget must be >= 0.");
        if (!Enum.IsDefined(_options.Policy))
            throw new ArgumentOutOfRangeException("options.Policy", _options.Policy, "MemoryKvCacheStoreOptions.Policy is not a known eviction policy.");
        _logger = _options.Logger ?? NullLogger.Instance;
    }

    /// <summary>Number of entries.</summary>
    public int Count { get { lock (_lock) return _entries.Count; } }

    /// <summary>Bytes of keys and values held.</summary>
    public long ByteSize => Interlocked.Read(ref _bytes);

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics { get { lock (_lock) return _counters.Snapshot(_entries.Count, _bytes); } }

    /// <inheritdoc/>
    public ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_lock)
        {
            if (!_entries.TryGetValue(key.Hash, out var node))
            {
                _counters.Miss();
                return ValueTask.FromResult<DocumentKvCache?>(null);
            }
            if (!StoreGuards.BelongsTo(node.Entry, key))
            {
                StoreGuards.Rejected(_logger, _counters, nameof(MemoryKvCacheStore), key, "stored entry belongs to another key");
                return ValueTask.FromResult<DocumentKvCache?>(null);
            }
            node.LastUse = ++_tick;
            node.Hits++;
            _counters.Hit(node.Bytes);
            return ValueTask.FromResult<DocumentKvCache?>(node.Entry.Share());
        }
    }

    /// <inheritdoc/>
    public ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        StoreGuards.EnsureBelongs(entry, key);
        lock (_lock)
        {
            var node = new Node(entry.Share(), ++_tick);
            if (_entries.Remove(key.Hash, out var old)) Drop(old);
            if (node.Bytes > _options.ByteBudget || !MakeRoom(node.Bytes))
            {
                _counters.Evict();
                _logger.LogInformation("KV cache store {Store}: entry {Key} ({Bytes} bytes) does not fit the budget and was not kept", nameof(MemoryKvCacheStore), key, node.Bytes);
                node.Entry.Dispose();
                return ValueTask.CompletedTask;
            }
            _entries[key.Hash] = node;
            _bytes += node.Bytes;
            _counters.Write(node.Bytes);
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_lock)
        {
            if (!_entries.Remove(key.Hash, out var node)) return ValueTask.FromResult(false);
            Drop(node);
            _counters.Remove();
            return ValueTask.FromResult(true);
        }
    }

    /// <inheritdoc/>
    public ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_lock) return ValueTask.FromResult(_entries.ContainsKey(key.Hash));
    }

    /// <inheritdoc/>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default) =>
        (await InvalidateKeysAsync(scope, cancellationToken).ConfigureAwait(false)).Count;

    /// <inheritdoc/>
    public ValueTask<IReadOnlyCollection<string>> InvalidateKeysAsync(KvCacheScope scope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scope);
        lock (_lock)
        {
            var victims = _entries.Where(p => scope.Matches(p.Value.Entry.Key)).Select(p => p.Key).ToList();
            foreach (var hash in victims)
            {
                _entries.Remove(hash, out var node);
                Drop(node!);
            }
            _counters.Remove(victims.Count);
            return ValueTask.FromResult<IReadOnlyCollection<string>>(victims);
        }
    }

    /// <summary>Keeps the entry of <paramref name="key"/> (now or when it is stored) from being evicted; removal and invalidation still drop it.</summary>
    public void Pin(KvCacheKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_lock) _pinned.Add(key.Hash);
    }

    /// <summary>Makes the entry of <paramref name="key"/> evictable again; false when it was not pinned.</summary>
    public bool Unpin(KvCacheKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (_lock) return _pinned.Remove(key.Hash);
    }

    /// <summary>Drops every entry, disposing the store's handles (readers keep theirs).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var node in _entries.Values) node.Entry.Dispose();
            _entries.Clear();
            _bytes = 0;
        }
    }

    /// <summary>Evicts unpinned entries by policy until <paramref name="bytes"/> more fit; false when pinned entries alone leave too little room.</summary>
    private bool MakeRoom(long bytes)
    {
        while (_bytes + bytes > _options.ByteBudget)
        {
            string? victim = null;
            Node? worst = null;
            foreach (var (hash, node) in _entries)
            {
                if (_pinned.Contains(hash)) continue;
                if (worst is null || Worse(node, worst)) (victim, worst) = (hash, node);
            }
            if (victim is null) return false;
            _entries.Remove(victim);
            Drop(worst!);
            _counters.Evict();
            _logger.LogDebug("KV cache store {Store}: evicted {Key} ({Policy})", nameof(MemoryKvCacheStore), worst!.Entry.Key, _options.Policy);
        }
        return true;
    }

    /// <summary>True when <paramref name="a"/> should go before <paramref name="b"/>.</summary>
    private bool Worse(Node a, Node b)
    {
        switch (_options.Policy)
        {
            case MemoryKvCacheStoreOptions.EvictionPolicy.Lfu:
                if (a.Hits != b.Hits) return a.Hits < b.Hits;
                break;
            case MemoryKvCacheStoreOptions.EvictionPolicy.CostAware:
                double va = Value(a), vb = Value(b);
                if (va != vb) return va < vb;
                break;
        }
        return a.LastUse < b.LastUse;
    }

    private static double Value(Node n) => (double)n.Entry.Length * (1 + n.Hits) / Math.Max(1, n.Bytes);

    private void Drop(Node node)
    {
        _bytes -= node.Bytes;
        node.Entry.Dispose();
    }
}
