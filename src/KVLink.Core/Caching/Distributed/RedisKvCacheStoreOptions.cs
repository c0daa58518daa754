using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>Settings of a <see cref="RedisKvCacheStore"/>.</summary>
public sealed class RedisKvCacheStoreOptions
{
    /// <summary>Prefix of every server key this store uses, so one server can hold other data too. Default "kvlink".</summary>
    public string KeyPrefix { get; set; } = "kvlink";
    /// <summary>Entries are split into values of at most this many bytes. Default 1 MiB.</summary>
    public int ChunkBytes { get; set; } = 1 << 20;
    /// <summary>Entries expire this long after they are written; null keeps them until removed or evicted by the server.</summary>
    public TimeSpan? TimeToLive { get; set; }
    /// <summary>How entries are written. Default <see cref="KvCacheCompression.None"/>.</summary>
    public KvCacheCompression Compression { get; set; } = KvCacheCompression.None;
    /// <summary>The server database number; -1 is the connection's default.</summary>
    public int Database { get; set; } = -1;
    /// <summary>Where refusals and server errors are logged; null logs nothing.</summary>
    public ILogger? Logger { get; set; }
}
