using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>Settings of a <see cref="MemoryKvCacheStore"/>.</summary>
public sealed class MemoryKvCacheStoreOptions
{
    /// <summary>Most bytes of keys and values held; unbounded by default.</summary>
    public long ByteBudget { get; set; } = long.MaxValue;
    /// <summary>What to drop first when over budget. Default <see cref="EvictionPolicy.Lru"/>.</summary>
    public EvictionPolicy Policy { get; set; } = EvictionPolicy.Lru;
    /// <summary>Where refusals and evictions are logged; null logs nothing.</summary>
    public ILogger? Logger { get; set; }

    /// <summary>Which unpinned entry the store drops first when it needs room (<see cref="Policy"/>).</summary>
    public enum EvictionPolicy
    {
        /// <summary>Least recently used.</summary>
        Lru,
        /// <summary>Least frequently used (fewest hits; ties go to the least recently used).</summary>
        Lfu,
        /// <summary>
        /// Lowest value per byte, where value is the recompute cost saved by keeping it: tokens x (1 + hits).
        /// A long document costs more to recompute than a short one of the same size on disk, and a frequently
        /// hit one more than a cold one. Ties go to the least recently used.
        /// </summary>
        CostAware,
    }
}
