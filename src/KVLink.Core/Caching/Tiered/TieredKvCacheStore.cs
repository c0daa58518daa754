namespace KVLink.Core.Caching;

/// <summary>
/// Tiers of stores, fastest first (typically memory over file over distributed). Reads try each tier in
/// order and copy a hit into the faster tiers above it (promotion); writes, removals and invalidations go
/// to every tier (write-through). Each tier keeps its own counters (<see cref="Tiers"/>); this store counts
/// the combined view: a hit in any tier is a hit, a miss is a miss in all of them, removals are distinct
/// entries, and entries and bytes are those of the fastest tier. A tier that throws (a server that is down,
/// a disk error) is skipped on reads and writes, so a request falls back to the next tier or to recomputing;
/// removals and invalidations still go to every reachable tier and then report the failure.
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
    /// <remarks>A tier that fails (throws) is skipped like a miss and counted in <see cref="KvCacheStoreStatistics.Unavailable"/>; a failed promotion is a failed write.</remarks>
    public async ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        bool failed = false;
        for (int i = 0; i < _tiers.Length; i++)
        {
            DocumentKvCache? entry;
            try { entry = await _tiers[i].GetAsync(key, cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (IsTierFailure(e)) { failed = true; continue; }
            if (entry is null) continue;
            for (int j = 0; j < i; j++) await PutTier(_tiers[j], key, entry, cancellationToken).ConfigureAwait(false);
            _counters.Hit(entry.ByteSize);
            return entry;
        }
        if (failed) _counters.Unavailable(); else _counters.Miss();
        return null;
    }

    /// <inheritdoc/>
    /// <remarks>Every tier is written; a tier that fails is skipped and counted in <see cref="KvCacheStoreStatistics.FailedWrites"/>.</remarks>
    public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(entry);
        bool all = true;
        foreach (var tier in _tiers) all &= await PutTier(tier, key, entry, cancellationToken).ConfigureAwait(false);
        if (all) _counters.Write(entry.ByteSize);
    }

    /// <inheritdoc/>
    /// <remarks>Every tier is tried; if one could not be reached, the others still remove and then the first error is thrown.</remarks>
    public async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        bool any = false;
        Exception? error = null;
        foreach (var tier in _tiers)
        {
            try { any |= await tier.RemoveAsync(key, cancellationToken).ConfigureAwait(false); }
            catch (Exception e) when (IsTierFailure(e)) { error ??= e; }
        }
        if (any) _counters.Remove();
        if (error is not null) throw Unavailable("remove " + key, error);
        return any;
    }

    /// <inheritdoc/>
    public async ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        foreach (var tier in _tiers)
        {
            try { if (await tier.ContainsAsync(key, cancellationToken).ConfigureAwait(false)) return true; }
            catch (Exception e) when (IsTierFailure(e)) { }
        }
        return false;
    }

    /// <summary>
    /// Invalidates <paramref name="scope"/> on every tier and returns how many distinct entries went: an entry held in
    /// several tiers counts once (each tier counts its own copies in its <see cref="KvCacheStoreStatistics.Removals"/>).
    /// When a tier is not one of the built-in stores, which say which entries they removed, the count is the largest
    /// of the tiers' counts (a lower bound). Every tier is tried; if one could not be reached, the others still
    /// invalidate and then the first error is thrown.
    /// </summary>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        var (keys, most, error) = await InvalidateTiers(scope, cancellationToken).ConfigureAwait(false);
        long removed = keys?.Count ?? most;
        _counters.Remove(removed);
        if (error is not null) throw Unavailable("invalidate " + scope, error);
        return removed;
    }

    /// <summary>Invalidates every reachable tier; the union of removed key hashes (null when a tier cannot tell), the largest tier count, and the first tier failure.</summary>
    private async Task<(HashSet<string>? Keys, long Most, Exception? Error)> InvalidateTiers(KvCacheScope scope, CancellationToken cancellationToken)
    {
        HashSet<string>? keys = new(StringComparer.Ordinal);
        long most = 0;
        Exception? error = null;
        foreach (var tier in _tiers)
        {
            try
            {
                if (tier is TieredKvCacheStore nested)
                {
                    var (inner, innerMost, innerError) = await nested.InvalidateTiers(scope, cancellationToken).ConfigureAwait(false);
                    long count = inner?.Count ?? innerMost;
                    nested._counters.Remove(count);
                    if (inner is null) keys = null; else keys?.UnionWith(inner);
                    most = Math.Max(most, count);
                    error ??= innerError;
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
            catch (Exception e) when (IsTierFailure(e)) { error ??= e; }
        }
        return (keys, most, error);
    }

    private async ValueTask<bool> PutTier(IKvCacheStore tier, KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken)
    {
        try
        {
            await tier.PutAsync(key, entry, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (IsTierFailure(e))
        {
            _counters.FailedWrite();
            return false;
        }
    }

    /// <summary>A tier's own failure (I/O, server, unavailable), as opposed to cancellation or a caller's bad argument.</summary>
    private static bool IsTierFailure(Exception e) => e is not (OperationCanceledException or ArgumentException);

    private static KvCacheStoreUnavailableException Unavailable(string what, Exception e) =>
        e as KvCacheStoreUnavailableException ?? new KvCacheStoreUnavailableException($"{nameof(TieredKvCacheStore)}: could not {what} on every tier ({e.Message}).", e);
}
