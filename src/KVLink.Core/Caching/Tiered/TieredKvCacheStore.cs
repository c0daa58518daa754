namespace KVLink.Core.Caching;

/// <summary>
/// Tiers of stores, fastest first (typically memory over file over distributed). Reads try each tier in
/// order and copy a hit into the faster tiers above it (promotion); writes, removals and invalidations go
/// to every tier (write-through). Each tier keeps its own counters (<see cref="Tiers"/>); this store counts
/// the combined view: a hit in any tier is a hit, a miss is a miss in all of them.
/// </summary>
public sealed class TieredKvCacheStore : IKvCacheStore
{
    private readonly IKvCacheStore[] _tiers;
    private readonly StoreCounters _counters = new();

    /// <summary>Creates a tiered store over <paramref name="tiers"/>, fastest first; the caller keeps owning them.</summary>
    public TieredKvCacheStore(params IKvCacheStore[] tiers)
    {
        ArgumentNullException.ThrowIfNull(tiers);
        if (tiers.Length == 0 || tiers.Any(t => t is null)) throw new ArgumentException("At least one tier, none null.", nameof(tiers));
        _tiers = [.. tiers];
    }

    /// <summary>The tiers, fastest first.</summary>
    public IReadOnlyList<IKvCacheStore> Tiers => _tiers;

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics
    {
        get
        {
            var top = _tiers[0].Statistics;
            return _counters.Snapshot(top.Entries, top.Bytes);
        }
    }

    /// <inheritdoc/>
    public async ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        for (int i = 0; i < _tiers.Length; i++)
        {
            var entry = await _tiers[i].GetAsync(key, cancellationToken).ConfigureAwait(false);
            if (entry is null) continue;
            for (int j = 0; j < i; j++) await _tiers[j].PutAsync(key, entry, cancellationToken).ConfigureAwait(false);
            _counters.Hit(entry.ByteSize);
            return entry;
        }
        _counters.Miss();
        return null;
    }

    /// <inheritdoc/>
    public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        foreach (var tier in _tiers) await tier.PutAsync(key, entry, cancellationToken).ConfigureAwait(false);
        _counters.Write(entry.ByteSize);
    }

    /// <inheritdoc/>
    public async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        bool any = false;
        foreach (var tier in _tiers) any |= await tier.RemoveAsync(key, cancellationToken).ConfigureAwait(false);
        if (any) _counters.Remove();
        return any;
    }

    /// <inheritdoc/>
    public async ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        foreach (var tier in _tiers)
            if (await tier.ContainsAsync(key, cancellationToken).ConfigureAwait(false)) return true;
        return false;
    }

    /// <inheritdoc/>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default)
    {
        long most = 0;
        foreach (var tier in _tiers) most = Math.Max(most, await tier.InvalidateAsync(scope, cancellationToken).ConfigureAwait(false));
        _counters.Remove(most);
        return most;
    }
}
