namespace KVLink.Core.Caching;

/// <summary>
/// A removal or invalidation could not be carried out: the store could not be reached or did not answer in time
/// (a Redis-protocol server that is down, a cache skipped by its open circuit), or refused it (a file the file system
/// will not delete, an index key of the wrong type). Reads and writes never throw this (they become counted misses
/// and failed writes); a removal does, because silently keeping an entry the caller asked to remove could serve it
/// later. Retrying once the store is back is safe.
/// </summary>
public sealed class KvCacheStoreUnavailableException : IOException
{
    /// <summary>Creates the exception.</summary>
    public KvCacheStoreUnavailableException(string message, Exception? inner = null) : base(message, inner) { }
}
