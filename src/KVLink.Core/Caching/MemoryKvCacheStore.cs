using System.Collections.Concurrent;
using KVLink.Core.Diagnostics;

namespace KVLink.Core.Caching;

/// <summary>
/// An unbounded in-process store. Replaced or removed entries are not disposed eagerly, because a
/// request on another thread may still be reading them; their memory returns when they are collected.
/// </summary>
public sealed class MemoryKvCacheStore : IKvCacheStore
{
    private readonly ConcurrentDictionary<string, DocumentKvCache> _entries = new(StringComparer.Ordinal);
    private readonly KvLinkMetrics? _metrics;

    /// <summary>Creates an empty store that reports nothing.</summary>
    public MemoryKvCacheStore()
    {
    }

    /// <summary>Creates an empty store that reports its hits and misses (tier "memory") to <paramref name="metrics"/>.</summary>
    public MemoryKvCacheStore(KvLinkMetrics? metrics) => _metrics = metrics;

    /// <summary>Number of entries.</summary>
    public int Count => _entries.Count;

    /// <summary>Bytes of keys and values held.</summary>
    public long ByteSize => _entries.Values.Sum(e => e.ByteSize);

    /// <inheritdoc/>
    public ValueTask<DocumentKvCache?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        if (_entries.TryGetValue(key, out var e))
        {
            _metrics?.RecordCacheHit(KvLinkTelemetry.MemoryTier, e.ByteSize);
            return ValueTask.FromResult<DocumentKvCache?>(e);
        }
        _metrics?.RecordCacheMiss(KvLinkTelemetry.MemoryTier);
        return ValueTask.FromResult<DocumentKvCache?>(null);
    }

    /// <inheritdoc/>
    public ValueTask PutAsync(string key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(entry);
        _entries[key] = entry;
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask<bool> RemoveAsync(string key, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(_entries.TryRemove(key, out _));

    /// <inheritdoc/>
    public ValueTask<bool> ContainsAsync(string key, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(_entries.ContainsKey(key));
}
