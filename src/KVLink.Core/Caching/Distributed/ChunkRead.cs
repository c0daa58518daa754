using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>What reading a chunked entry found: nothing, something refused (and why), or the chunks a manifest named.</summary>
internal sealed class ChunkRead
{
    private readonly byte[][]? _chunks;
    private readonly ChunkManifest? _manifest;
    private readonly string? _rejection;

    private ChunkRead(byte[][]? chunks, ChunkManifest? manifest, string? rejection) => (_chunks, _manifest, _rejection) = (chunks, manifest, rejection);

    /// <summary>No entry: absent, expired, or a chunk gone because the entry was replaced or removed meanwhile.</summary>
    public static ChunkRead Miss { get; } = new(null, null, null);

    /// <summary>Something is stored but is not an entry this store can serve.</summary>
    public static ChunkRead Rejected(string reason) => new(null, null, reason);

    /// <summary>Every chunk <paramref name="manifest"/> names.</summary>
    public static ChunkRead Of(byte[][] chunks, ChunkManifest manifest) => new(chunks, manifest, null);

    /// <summary>Counts the outcome and returns the decoded entry on a hit.</summary>
    public DocumentKvCache? Finish(KvCacheKey key, ILogger logger, StoreCounters counters, string store)
    {
        if (_rejection is not null) { StoreGuards.Rejected(logger, counters, store, key, _rejection); return null; }
        if (_chunks is null || _manifest is null) { counters.Miss(); return null; }
        for (int i = 0; i < _chunks.Length; i++)
        {
            if (_chunks[i].Length != _manifest.ChunkLength(i))
            {
                StoreGuards.Rejected(logger, counters, store, key, $"chunk {i} has {_chunks[i].Length} bytes, the manifest says {_manifest.ChunkLength(i)}");
                return null;
            }
        }
        var bytes = StoreGuards.Concatenate(_chunks, _manifest.Length);
        if (bytes is null) { StoreGuards.Rejected(logger, counters, store, key, "chunks do not add up to the manifest's length"); return null; }
        return StoreGuards.Decode(bytes, key, logger, counters, store);
    }
}
