namespace KVLink.Core.Caching;

/// <summary>
/// Where document caches live between requests. Implementations must be thread safe, and must never
/// throw on the read path because of what they hold: a corrupt, truncated, foreign or outdated entry is
/// a miss (counted in <see cref="KvCacheStoreStatistics.Rejected"/> and logged), so the engine recomputes it.
/// </summary>
public interface IKvCacheStore
{
    /// <summary>
    /// The entry stored under <paramref name="key"/>, or null on a miss. The caller owns the returned
    /// object (its own tensor handles) and may dispose it; the store's copy is unaffected.
    /// </summary>
    ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default);

    /// <summary>
    /// Stores <paramref name="entry"/> under <paramref name="key"/>, replacing any previous one. The caller
    /// keeps ownership of <paramref name="entry"/> and may keep using or dispose it afterwards.
    /// </summary>
    ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default);

    /// <summary>Removes the entry; returns false when there was none.</summary>
    ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default);

    /// <summary>True when an entry is stored under <paramref name="key"/> (it may still be rejected when read).</summary>
    ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default);

    /// <summary>Removes every entry in <paramref name="scope"/>; returns how many were removed.</summary>
    ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default);

    /// <summary>This store's counters (for a tiered store: the tiered view; each tier keeps its own).</summary>
    KvCacheStoreStatistics Statistics { get; }
}
