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

    /// <summary>
    /// Decodes a value read for <paramref name="key"/>: the entry on a hit (counted), or null after counting and
    /// logging a rejection when the bytes are corrupt, of another format version, or another key's entry.
    /// </summary>
    public static DocumentKvCache? Decode(byte[] bytes, KvCacheKey key, ILogger logger, StoreCounters counters, string store)
    {
        DocumentKvCache entry;
        try { entry = KvCacheFormat.Deserialize(bytes); }
        catch (KvCacheFormatException e) { Rejected(logger, counters, store, key, e.Message); return null; }
        if (!BelongsTo(entry, key))
        {
            entry.Dispose();
            Rejected(logger, counters, store, key, "the stored value is the entry of another key");
            return null;
        }
        counters.Hit(bytes.Length);
        return entry;
    }

    /// <summary>Joins the chunks of a chunked value, or null when they do not add up to the manifest's length.</summary>
    public static byte[]? Concatenate(IReadOnlyList<byte[]> chunks, long expectedLength)
    {
        long total = chunks.Sum(c => (long)c.Length);
        if (total != expectedLength || total > Array.MaxLength) return null;
        var bytes = new byte[total];
        int at = 0;
        foreach (var c in chunks) { c.CopyTo(bytes, at); at += c.Length; }
        return bytes;
    }

    /// <summary>Throws unless <paramref name="entry"/> is the entry <paramref name="key"/> names: a store never files an entry under another key.</summary>
    public static void EnsureBelongs(DocumentKvCache entry, KvCacheKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(entry);
        if (!BelongsTo(entry, key)) throw new ArgumentException($"The entry's own key ({entry.Key}) is not {key}.", nameof(entry));
    }

    /// <summary>How many chunks of at most <paramref name="chunkBytes"/> a value of <paramref name="length"/> bytes takes (at least one).</summary>
    public static int ChunkCount(int length, int chunkBytes) => Math.Max(1, (length + chunkBytes - 1) / chunkBytes);
}
