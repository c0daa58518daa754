using KVLink.Core.Caching;

namespace KVLink.Core.Tests;

/// <summary>A real memory store that also counts writes (how often a cache was computed and stored).</summary>
public sealed class CountingStore : IKvCacheStore
{
    private readonly MemoryKvCacheStore _inner;
    private int _puts;

    public CountingStore() => _inner = new();

    public int Puts => _puts;
    public KvCacheStoreStatistics Statistics => _inner.Statistics;
    public ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken ct = default) => _inner.GetAsync(key, ct);
    public ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken ct = default) { Interlocked.Increment(ref _puts); return _inner.PutAsync(key, entry, ct); }
    public ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken ct = default) => _inner.RemoveAsync(key, ct);
    public ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken ct = default) => _inner.ContainsAsync(key, ct);
    public ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken ct = default) => _inner.InvalidateAsync(scope, ct);
}
