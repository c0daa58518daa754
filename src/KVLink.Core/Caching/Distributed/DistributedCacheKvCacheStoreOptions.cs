using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>Settings of a <see cref="DistributedCacheKvCacheStore"/>.</summary>
public sealed class DistributedCacheKvCacheStoreOptions
{
    /// <summary>Prefix of every cache key this store uses, so one cache can hold other data too. Default "kvlink".</summary>
    public string KeyPrefix { get; set; } = "kvlink";
    /// <summary>Entries are split into values of at most this many bytes (at least 1,024). Default 1 MiB.</summary>
    public int ChunkBytes { get; set; } = 1 << 20;
    /// <summary>Entries expire this long after they are written (absolute expiration); null keeps them until removed or evicted by the cache.</summary>
    public TimeSpan? TimeToLive { get; set; }
    /// <summary>How entries are written. Default <see cref="KvCacheCompression.None"/>.</summary>
    public KvCacheCompression Compression { get; set; } = KvCacheCompression.None;
    /// <summary>Where refusals and cache errors are logged; null logs nothing.</summary>
    public ILogger? Logger { get; set; }
}
