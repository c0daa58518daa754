using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>
/// Settings of a <see cref="ChunkedKvCacheStore"/>: of <see cref="DistributedCacheKvCacheStore"/> as they are, and the
/// base of a derived store's own settings (the Redis store adds its database number).
/// </summary>
public class ChunkedKvCacheStoreOptions
{
    /// <summary>Prefix of every server key this store uses, so one server can hold other data too. Default "kvlink".</summary>
    public string KeyPrefix { get; set; } = "kvlink";
    /// <summary>Entries are split into values of at most this many bytes (at least 1,024). Default 1 MiB.</summary>
    public int ChunkBytes { get; set; } = 1 << 20;
    /// <summary>Entries expire this long after they are written (absolute expiration); null keeps them until removed or evicted by the server.</summary>
    public TimeSpan? TimeToLive { get; set; }
    /// <summary>How entries are written. Default <see cref="KvCacheQuantization.None"/>.</summary>
    public KvCacheQuantization Quantization { get; set; } = KvCacheQuantization.None;
    /// <summary>
    /// Largest entry (serialized bytes) this store writes or reads; a bigger entry is not written (counted in
    /// <see cref="KvCacheStoreStatistics.Evictions"/>) and a manifest claiming more is a rejected miss, before any
    /// chunk is read. A manifest naming more chunks than this store's own largest entry has (MaxEntryBytes /
    /// ChunkBytes, rounded up) is refused the same way, and its chunks are neither read nor deleted when the entry is
    /// overwritten or removed: stores sharing a server should use the same ChunkBytes and MaxEntryBytes. Default 1 GiB.
    /// </summary>
    public long MaxEntryBytes { get; set; } = 1L << 30;
    /// <summary>
    /// Longest one store call (a read, write or removal of one entry, all its chunks) may take before it is given up
    /// (a read is then a miss, a write a failed write, a removal throws). Default 2 s; raise it for very large
    /// entries on slow links. <see cref="Timeout.InfiniteTimeSpan"/> waits as long as the client does.
    /// </summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(2);
    /// <summary>
    /// After this many consecutive failed calls (server unreachable or timed out) the store stops calling the
    /// server for <see cref="BreakDuration"/>: reads are misses and writes are skipped at once, both counted.
    /// Default 3; 0 never stops calling.
    /// </summary>
    public int FailuresBeforeBreak { get; set; } = 3;
    /// <summary>How long the store skips the server once <see cref="FailuresBeforeBreak"/> is reached; then one call probes it. Default 10 s.</summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>The clock for <see cref="OperationTimeout"/> and <see cref="BreakDuration"/>; null is the system clock.</summary>
    public TimeProvider? TimeProvider { get; set; }
    /// <summary>Where refusals and server errors are logged; null logs nothing.</summary>
    public ILogger? Logger { get; set; }
}
