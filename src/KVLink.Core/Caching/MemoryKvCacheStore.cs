using System.Collections.Concurrent;

namespace KVLink.Core.Caching;

/// <summary>
/// An unbounded in-process store. Replaced or removed entries are not disposed eagerly, because a
/// request on another thread may still be reading them; their memory returns when they are collected.
/// </summary>
public sealed class MemoryKvCacheStore : IKvCacheStore
{
    private readonly ConcurrentDictionary<string, DocumentKvCache> _entries = new(StringComparer.Ordinal);

    /// <summary>Number of entries.</summary>
    public int Count => _entries.Count;

    /// <summary>Bytes of keys and values held.</summary>
    public long ByteSize => _entries.Values.Sum(e => e.ByteSize);

    /// <inheritdoc/>
    public ValueTask<DocumentKvCache?> GetAsync(string key, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(_entries.TryGetValue(key, out var e) ? e : null);

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
