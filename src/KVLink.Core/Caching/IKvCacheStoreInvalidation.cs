namespace KVLink.Core.Caching;

/// <summary>
/// Invalidation that says which entries went, by <see cref="KvCacheKey.Hash"/>. The built-in stores implement it
/// so a <see cref="TieredKvCacheStore"/> can report how many distinct entries an invalidation removed, an entry
/// held in several tiers counting once.
/// </summary>
internal interface IKvCacheStoreInvalidation
{
    /// <summary>Removes every entry in <paramref name="scope"/>; returns the key hashes of those removed.</summary>
    ValueTask<IReadOnlyCollection<string>> InvalidateKeysAsync(KvCacheScope scope, CancellationToken cancellationToken);
}
