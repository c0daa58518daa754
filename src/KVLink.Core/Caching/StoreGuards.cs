using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>Checks shared by the stores.</summary>
internal static class StoreGuards
{
    /// <summary>True when a stored entry really is the one <paramref name="key"/> names (tenant, model, format, document, slot).</summary>
    public static bool BelongsTo(DocumentKvCache entry, KvCacheKey key) => entry.Key == key;

    /// <summary>Logs and counts a refused entry.</summary>
    public static void Rejected(ILogger logger, StoreCounters counters, string store, KvCacheKey key, string reason)
    {
        counters.Reject();
        logger.LogWarning("KV cache store {Store}: entry {Key} refused and treated as a miss: {Reason}", store, key, reason);
    }
}
