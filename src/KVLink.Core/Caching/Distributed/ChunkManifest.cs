using System.Globalization;

namespace KVLink.Core.Caching;

/// <summary>
/// The manifest of a chunked entry (Redis and <c>IDistributedCache</c> stores), as text:
/// "v2 write-id chunk-count chunk-bytes byte-length tenant-hash model-hash document-hash".
/// A manifest is read from a shared server, so it is untrusted: <see cref="Parse"/> accepts it only when its
/// length is at most the store's largest entry and its chunk count is exactly the one that length and chunk size
/// imply. That bounds, before any chunk is read, how many keys a read asks for and how many bytes it can collect.
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

    /// <summary>The manifest <paramref name="text"/> describes, or null when it is malformed or claims more than <paramref name="maxEntryBytes"/>.</summary>
    public static ChunkManifest? Parse(string? text, long maxEntryBytes)
    {
        if (text is null || text.Length is 0 or > 256) return null;
        var p = text.Split(' ');
        if (p.Length != 8 || p[0] != "v2" || !IsHex(p[1], 32) || !IsHex(p[5], 16) || !IsHex(p[6], 16) || !IsHex(p[7], 16)
            || !int.TryParse(p[2], NumberStyles.None, CultureInfo.InvariantCulture, out int chunks)
            || !int.TryParse(p[3], NumberStyles.None, CultureInfo.InvariantCulture, out int chunkBytes)
            || !long.TryParse(p[4], NumberStyles.None, CultureInfo.InvariantCulture, out long length)
            || chunkBytes < MinChunkBytes || length < 1 || length > Math.Min(maxEntryBytes, Array.MaxLength)
            || chunks != (length + chunkBytes - 1) / chunkBytes) return null;
        return new ChunkManifest(p[1], chunks, chunkBytes, length, p[5], p[6], p[7]);
    }

    private static bool IsHex(string s, int length) => s.Length == length && s.All(char.IsAsciiHexDigitLower);
}
