using KVLink.Core.Redis;
using KVLink.Core.Caching;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Caching;

/// <summary>TTL on both server-backed stores, and the key layout of the IDistributedCache store, on the in-process Garnet.</summary>
[Collection(GarnetCollection.Name)]
public sealed class DistributedStoreTests(GarnetFixture garnet)
{
    private readonly string _prefix = "d" + Guid.NewGuid().ToString("N")[..12];

    private IKvCacheStore Create(string kind, TimeSpan? ttl = null, int chunkBytes = 4096) => kind switch
    {
        "redis" => new RedisKvCacheStore(garnet.Connection, new RedisKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = chunkBytes, TimeToLive = ttl }),
        "distributed" => new DistributedCacheKvCacheStore(garnet.DistributedCache, new ChunkedKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = chunkBytes, TimeToLive = ttl }),
        _ => throw new ArgumentException(kind),
    };

    /// <summary>Every server key under this test's prefix (RedisCache puts its instance name "dc:" in front).</summary>
    private async Task<List<string>> ServerKeys()
    {
        var server = garnet.Connection.GetServer(garnet.Connection.GetEndPoints()[0]);
        var keys = new List<string>();
        await foreach (var k in server.KeysAsync(pattern: $"*{_prefix}*")) keys.Add(k!);
        return keys;
    }

    // Expiry itself is the server's job and runs on the server's clock, which a fake TimeProvider cannot move; so these
    // tests check what the store controls without waiting: the TTL it puts on every key it writes, and that a key the
    // server has dropped reads as a miss.

    [Theory]
    [InlineData("redis")]
    [InlineData("distributed")]
    public async Task An_entry_written_with_a_TTL_has_it_on_every_server_key_and_is_a_miss_once_they_expire(string kind)
    {
        var ttl = TimeSpan.FromHours(1);
        var store = Create(kind, ttl);
        var key = CacheTestData.Key("short-lived");
        using (var entry = CacheTestData.Entry(key, tokens: 40)) await store.PutAsync(key, entry);
        using (var fresh = await store.GetAsync(key)) Assert.NotNull(fresh);

        var db = garnet.Connection.GetDatabase();
        // The entry's keys (manifest and chunks), not the tenant index ("ix"), which invalidation keeps without expiry.
        var keys = (await ServerKeys()).Where(k => !k.Contains(":ix", StringComparison.Ordinal)).ToList();
        Assert.True(keys.Count >= 2, $"{keys.Count} entry keys");
        foreach (string k in keys)
        {
            var left = await db.KeyTimeToLiveAsync(k);
            // The manifest gets the TTL; chunks a minute more, so a reader that found the manifest still finds them.
            Assert.True(left is { } l && l > ttl - TimeSpan.FromMinutes(5) && l <= ttl + TimeSpan.FromMinutes(1), $"{k}: TTL {left?.ToString() ?? "none"}, expected {ttl} (+1 min for chunks)");
        }

        foreach (string k in keys) await db.KeyDeleteAsync(k); // what the server does when the TTL runs out
        Assert.Null(await store.GetAsync(key));
        Assert.False(await store.ContainsAsync(key));
        var stats = store.Statistics;
        Assert.Equal(1, stats.Hits);
        Assert.Equal(1, stats.Misses);
        Assert.Equal(0, stats.Rejected);
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("distributed")]
    public async Task Without_a_TTL_no_server_key_expires(string kind)
    {
        var store = Create(kind);
        var key = CacheTestData.Key("long-lived");
        using (var entry = CacheTestData.Entry(key)) await store.PutAsync(key, entry);
        var db = garnet.Connection.GetDatabase();
        var keys = await ServerKeys();
        Assert.NotEmpty(keys);
        foreach (string k in keys) Assert.Null(await db.KeyTimeToLiveAsync(k));
        using var back = await store.GetAsync(key);
        Assert.NotNull(back);
    }

    [Fact]
    public async Task Distributed_store_chunks_large_entries_and_puts_the_tenant_in_every_key()
    {
        var store = Create("distributed", chunkBytes: 4096);
        var a = CacheTestData.Key("doc", tenant: "A");
        var b = CacheTestData.Key("doc", tenant: "B");
        using var entryA = CacheTestData.Entry(a, tokens: 100);   // 2 x 2x2x100x16 fp32 = 51,200 bytes of tensors
        using var entryB = CacheTestData.Entry(b, tokens: 3);
        await store.PutAsync(a, entryA);
        await store.PutAsync(b, entryB);
        int chunksA = (KvCacheFormat.Serialize(entryA).Length + 4095) / 4096;
        Assert.True(chunksA > 10);

        var keys = await ServerKeys();
        Assert.All(keys.Where(k => !k.EndsWith(":ix:tenants", StringComparison.Ordinal)), k =>
            Assert.True(k.StartsWith($"dc:{_prefix}:v2:{a.TenantHash}:", StringComparison.Ordinal) || k.StartsWith($"dc:{_prefix}:v2:{b.TenantHash}:", StringComparison.Ordinal), k));
        Assert.Equal(chunksA, keys.Count(k => k.StartsWith($"dc:{_prefix}:v2:{a.TenantHash}:c:{a.Hash}:", StringComparison.Ordinal)));
        Assert.Equal(1, keys.Count(k => k.StartsWith($"dc:{_prefix}:v2:{b.TenantHash}:c:{b.Hash}:", StringComparison.Ordinal)));
        // No caller-supplied string reaches the server.
        Assert.DoesNotContain(keys, k => k.Contains("doc", StringComparison.Ordinal) || k.Contains(":A:", StringComparison.Ordinal));

        // Replacing the entry leaves one write's chunks; removing it leaves none of its keys.
        using (var again = CacheTestData.Entry(a, tokens: 100, seed: 2)) await store.PutAsync(a, again);
        keys = await ServerKeys();
        Assert.Equal(chunksA, keys.Count(k => k.Contains($":c:{a.Hash}:", StringComparison.Ordinal)));
        Assert.True(await store.RemoveAsync(a));
        keys = await ServerKeys();
        Assert.DoesNotContain(keys, k => k.Contains(a.Hash, StringComparison.Ordinal));
        using var stillB = await store.GetAsync(b);
        CacheTestData.AssertSame(entryB, stillB!);

        var stats = store.Statistics;
        Assert.Equal(1, stats.Entries);
        Assert.Equal(KvCacheFormat.Serialize(entryB).Length, stats.Bytes);
        Assert.Equal(3, stats.Writes);
        Assert.Equal(1, stats.Removals);
    }

    [Fact]
    public async Task Distributed_store_reads_a_missing_chunk_as_a_plain_miss_and_a_foreign_manifest_as_rejected()
    {
        var store = (DistributedCacheKvCacheStore)Create("distributed", chunkBytes: 4096);
        var key = CacheTestData.Key("partial");
        using (var entry = CacheTestData.Entry(key, tokens: 100)) await store.PutAsync(key, entry);
        var chunk = (await ServerKeys()).First(k => k.Contains($":c:{key.Hash}:", StringComparison.Ordinal));
        await garnet.Connection.GetDatabase().KeyDeleteAsync(chunk);
        Assert.Null(await store.GetAsync(key));
        Assert.Equal((1, 0L), (store.Statistics.Misses, store.Statistics.Rejected));

        // A manifest of another tenant planted under this key is refused.
        var other = CacheTestData.Key("partial", tenant: "someone-else");
        await Microsoft.Extensions.Caching.Distributed.DistributedCacheExtensions.SetAsync(garnet.DistributedCache, store.ManifestKey(key),
            System.Text.Encoding.ASCII.GetBytes(new ChunkManifest(Guid.NewGuid().ToString("N"), 1, 1024, 10, other.TenantHash, other.ModelHash, other.DocumentHash).ToString()));
        Assert.Null(await store.GetAsync(key));
        Assert.Equal((2, 1L), (store.Statistics.Misses, store.Statistics.Rejected));
    }
}
