using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>Settings of a <see cref="MemoryKvCacheStore"/>.</summary>
public sealed class MemoryKvCacheStoreOptions
{
    /// <summary>Most bytes of keys and values held; unbounded by default.</summary>
    public long ByteBudget { get; set; } = long.MaxValue;
    /// <summary>What to drop first when over budget. Default LRU.</summary>
    public KvCacheEvictionPolicy Policy { get; set; } = KvCacheEvictionPolicy.Lru;
    /// <summary>Where refusals and evictions are logged; null logs nothing.</summary>
    public ILogger? Logger { get; set; }
}
