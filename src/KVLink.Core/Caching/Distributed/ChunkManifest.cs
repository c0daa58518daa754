using System.Globalization;

namespace KVLink.Core.Caching;

/// <summary>
/// The manifest of a chunked entry (Redis and <c>IDistributedCache</c> stores), as text:
/// "v2 write-id chunk-count chunk-bytes byte-length tenant-hash model-hash document-hash".
/// A manifest is read from a shared server, so it is untrusted: <see cref="Parse"/> accepts it only when its
/// length is at most the store's largest entry, its chunk count is exactly the one that length and chunk size
/// imply, and that count is at most the one the store's own largest entry has (<see cref="MaxChunks"/>). That
/// bounds, before any chunk key is named, how many keys a read asks for, how many bytes it can collect and how many
/// keys an overwrite or removal deletes: a planted manifest cannot make the store enumerate more keys than a
/// genuine entry of this store could have.
/// </summary>
internal sealed record ChunkManifest(string Write, int Chunks, int ChunkBytes, long Length, string Tenant, string Model, string Document)
{
    /// <summary>Smallest chunk size a store writes (and a manifest may name).</summary>
    public const int MinChunkBytes = 1024;

    /// <summary>A manifest for a new write of <paramref name="length"/> bytes of <paramref name="key"/>'s entry.</summary>
    public static ChunkManifest For(KvCacheKey key, int length, int chunkBytes) =>
        new(Guid.NewGuid().ToString("N"), StoreGuards.ChunkCount(length, chunkBytes), chunkBytes, length, key.TenantHash, key.ModelHash, key.DocumentHash);

    /// <summary>Byte length chunk <paramref name="i"/> must have: full chunks, then the remainder.</summary>
    public int ChunkLength(int i) => i < Chunks - 1 ? ChunkBytes : (int)(Length - (long)ChunkBytes * (Chunks - 1));

    /// <summary>The slice of <paramref name="bytes"/> chunk <paramref name="i"/> holds.</summary>
    public ReadOnlyMemory<byte> Slice(byte[] bytes, int i) => bytes.AsMemory(i * ChunkBytes, ChunkLength(i));

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"v2 {Write} {Chunks} {ChunkBytes} {Length} {Tenant} {Model} {Document}");

    /// <summary>
    /// Most chunks an entry of a store with these settings has: its largest entry in its own chunk size. A manifest
    /// written with smaller chunks (a 1 GiB length in 1 KiB chunks claims 1,048,576) names more keys than this store
    /// would ever write for one entry, so it is not one of its entries, whatever its length.
    /// </summary>
    public static long MaxChunks(long maxEntryBytes, int storeChunkBytes) =>
        maxEntryBytes / storeChunkBytes + (maxEntryBytes % storeChunkBytes == 0 ? 0 : 1);

    /// <summary>
    /// The manifest <paramref name="text"/> describes, or null when it is malformed, claims more than
    /// <paramref name="maxEntryBytes"/> or names more chunks than <see cref="MaxChunks"/> of the store's settings.
    /// </summary>
    public static ChunkManifest? Parse(string? text, long maxEntryBytes, int storeChunkBytes)
    {
        if (text is null || text.Length is 0 or > 256) return null;
        var p = text.Split(' ');
        if (p.Length != 8 || p[0] != "v2" || !IsHex(p[1], 32) || !IsHex(p[5], 16) || !IsHex(p[6], 16) || !IsHex(p[7], 16)
            || !int.TryParse(p[2], NumberStyles.None, CultureInfo.InvariantCulture, out int chunks)
            || !int.TryParse(p[3], NumberStyles.None, CultureInfo.InvariantCulture, out int chunkBytes)
            || !long.TryParse(p[4], NumberStyles.None, CultureInfo.InvariantCulture, out long length)
            || chunkBytes < MinChunkBytes || length < 1 || length > Math.Min(maxEntryBytes, Array.MaxLength)
            || chunks != (length + chunkBytes - 1) / chunkBytes || chunks > MaxChunks(maxEntryBytes, storeChunkBytes)) return null;
        return new ChunkManifest(p[1], chunks, chunkBytes, length, p[5], p[6], p[7]);
    }

    private static bool IsHex(string s, int length) => s.Length == length && s.All(char.IsAsciiHexDigitLower);
}
