using KVLink.Core.Caching;

namespace KVLink.Core.Redis;

/// <summary>
/// Settings of a <see cref="RedisKvCacheStore"/>: those of every <see cref="ChunkedKvCacheStore"/> (a
/// <see cref="ChunkedKvCacheStoreOptions.KeyPrefix"/> without braces: the store adds a hash tag per entry), and the database.
/// </summary>
public sealed class RedisKvCacheStoreOptions : ChunkedKvCacheStoreOptions
{
    /// <summary>The server database number; -1 is the connection's default.</summary>
    public int Database { get; set; } = -1;
}
