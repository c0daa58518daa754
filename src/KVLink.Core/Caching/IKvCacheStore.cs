namespace KVLink.Core.Caching;

/// <summary>
/// Where document caches live between requests. Keys are opaque strings the engine derives from the
/// model fingerprint, prompt format, document id and slot. Implementations must be thread safe.
/// The engine never disposes what <see cref="GetAsync"/> returns and never changes its tensors.
/// </summary>
public interface IKvCacheStore
{
    /// <summary>The entry stored under <paramref name="key"/>, or null on a miss.</summary>
    ValueTask<DocumentKvCache?> GetAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>Stores <paramref name="entry"/> under <paramref name="key"/>, replacing any previous one. The caller may keep reading the entry afterwards, so a store must not dispose it while it is still in use.</summary>
    ValueTask PutAsync(string key, DocumentKvCache entry, CancellationToken cancellationToken = default);

    /// <summary>Removes the entry; returns false when there was none.</summary>
    ValueTask<bool> RemoveAsync(string key, CancellationToken cancellationToken = default);

    /// <summary>True when an entry is stored under <paramref name="key"/>.</summary>
    ValueTask<bool> ContainsAsync(string key, CancellationToken cancellationToken = default);
}
