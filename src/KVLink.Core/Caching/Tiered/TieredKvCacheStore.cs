namespace KVLink.Core.Caching;

/// <summary>
/// Tiers of stores, fastest first (typically memory over file over distributed). Reads try each tier in
/// order and copy a hit into the faster tiers above it (promotion); writes, removals and invalidations go
/// to every tier (write-through). Each tier keeps its own counters (<see cref="Tiers"/>); this store counts
/// the combined view: a hit in any tier is a hit, a miss is a miss in all of them, removals are distinct
/// entries, and entries and bytes are those of the fastest tier.
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

    /// <summary>
    /// Invalidates <paramref name="scope"/> on every tier and returns how many distinct entries went: an entry held in
    /// several tiers counts once (each tier counts its own copies in its <see cref="KvCacheStoreStatistics.Removals"/>).
    /// When a tier is not one of the built-in stores, which say which entries they removed, the count is the largest
    /// of the tiers' counts (a lower bound).
    /// </summary>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        var (keys, most) = await InvalidateTiers(scope, cancellationToken).ConfigureAwait(false);
        long removed = keys?.Count ?? most;
        _counters.Remove(removed);
        return removed;
    }

    /// <summary>Invalidates every tier; the union of removed key hashes (null when a tier cannot tell) and the largest tier count.</summary>
    private async Task<(HashSet<string>? Keys, long Most)> InvalidateTiers(KvCacheScope scope, CancellationToken cancellationToken)
    {
        HashSet<string>? keys = new(StringComparer.Ordinal);
        long most = 0;
        foreach (var tier in _tiers)
        {
            if (tier is TieredKvCacheStore nested)
            {
                var (inner, innerMost) = await nested.InvalidateTiers(scope, cancellationToken).ConfigureAwait(false);
                long count = inner?.Count ?? innerMost;
                nested._counters.Remove(count);
                if (inner is null) keys = null; else keys?.UnionWith(inner);
                most = Math.Max(most, count);
            }
            else if (tier is IKvCacheStoreInvalidation detailed)
            {
                var removed = await detailed.InvalidateKeysAsync(scope, cancellationToken).ConfigureAwait(false);
                keys?.UnionWith(removed);
                most = Math.Max(most, removed.Count);
            }
            else
            {
                most = Math.Max(most, await tier.InvalidateAsync(scope, cancellationToken).ConfigureAwait(false));
                keys = null;
            }
        }
        return (keys, most);
    }
}
