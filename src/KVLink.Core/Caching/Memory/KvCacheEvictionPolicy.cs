namespace KVLink.Core.Caching;

/// <summary>Which unpinned entry a bounded store drops first when it needs room.</summary>
public enum KvCacheEvictionPolicy
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
