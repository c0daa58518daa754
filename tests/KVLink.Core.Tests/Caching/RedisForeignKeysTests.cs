using KVLink.Core.Redis;
using KVLink.Core.Caching;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Caching;

/// <summary>
/// Keys of the wrong Redis type under the Redis store's names (left by another writer on a shared server) are replaced
/// or reported, never a blocked write; and every key of an entry shares one cluster slot. On the real in-process Garnet server.
/// </summary>
[Collection(GarnetCollection.Name)]
public sealed class RedisForeignKeysTests(GarnetFixture garnet)
{
    private readonly string _prefix = "f" + Guid.NewGuid().ToString("N")[..12];
    private IDatabase Db => garnet.Connection.GetDatabase();

    private RedisKvCacheStore Redis() => new(garnet.Connection, new RedisKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = 4096 });

    [Fact]
    public async Task A_manifest_key_of_the_wrong_type_is_a_rejected_miss_and_replaced_by_the_next_write()
    {
        var store = Redis();
        var key = CacheTestData.Key("listed");
        await Db.ListRightPushAsync(store.Manifest(key.Hash), "junk");
        Assert.Null(await store.GetAsync(key));
        Assert.Equal((1L, 0L), (store.Statistics.Rejected, store.Statistics.Unavailable));

        using var entry = CacheTestData.Entry(key);
        for (int i = 0; i < 2; i++) await store.PutAsync(key, entry);
        Assert.Equal((2L, 0L), (store.Statistics.Writes, store.Statistics.FailedWrites));
        using (var back = await store.GetAsync(key)) CacheTestData.AssertSame(entry, back!);
        Assert.Equal(RedisType.String, await Db.KeyTypeAsync(store.Manifest(key.Hash)));

        // Removal deletes junk under the name too, and says there was no entry.
        await Db.KeyDeleteAsync(store.Manifest(key.Hash));
        await Db.ListRightPushAsync(store.Manifest(key.Hash), "junk");
        Assert.False(await store.RemoveAsync(key));
        Assert.False(await Db.KeyExistsAsync(store.Manifest(key.Hash)));
    }

    [Fact]
    public async Task Index_keys_of_the_wrong_type_are_replaced_so_writes_count_and_invalidation_finds_every_entry()
    {
        var store = Redis();
        var keys = Enumerable.Range(0, 8).Select(i => CacheTestData.Key($"doc-{i}")).ToArray();
        await Db.ListRightPushAsync(store.AllIndex, "junk");
        await Db.StringSetAsync(store.Index("t", keys[0].TenantHash), "junk");
        foreach (var k in keys) { using var e = CacheTestData.Entry(k); await store.PutAsync(k, e); }
        Assert.Equal((8L, 0L), (store.Statistics.Writes, store.Statistics.FailedWrites));
        Assert.Equal(RedisType.Set, await Db.KeyTypeAsync(store.AllIndex));

        Assert.Equal(8, await store.InvalidateAsync(new KvCacheScope()));
        Assert.Equal(0, await store.InvalidateAsync(new KvCacheScope()));
        foreach (var k in keys) Assert.False(await store.ContainsAsync(k));
    }

    [Fact]
    public async Task An_index_that_became_another_type_is_reported_as_such_and_repaired()
    {
        var store = Redis();
        var key = CacheTestData.Key("indexed");
        using (var e = CacheTestData.Entry(key)) await store.PutAsync(key, e);
        await Db.KeyDeleteAsync(store.Index("t", key.TenantHash));
        await Db.ListRightPushAsync(store.Index("t", key.TenantHash), "junk");

        var error = await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(async () => await store.InvalidateAsync(new KvCacheScope(Tenant: key.Tenant)));
        Assert.Contains("another Redis type", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("unavailable", error.Message, StringComparison.Ordinal);
        Assert.False(await Db.KeyExistsAsync(store.Index("t", key.TenantHash)));
        // The entry is still reachable through the other indexes, and the tenant index works again after a write.
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope(DocumentId: key.DocumentId)));
        using (var e = CacheTestData.Entry(key)) await store.PutAsync(key, e);
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope(Tenant: key.Tenant)));
    }

    [Fact]
    public async Task Every_key_of_an_entry_hashes_to_one_cluster_slot()
    {
        var store = Redis();
        var key = CacheTestData.Key("slotted");
        using (var e = CacheTestData.Entry(key, tokens: 200)) await store.PutAsync(key, e);
        var server = garnet.Connection.GetServer(garnet.Connection.GetEndPoints()[0]);
        var entryKeys = new List<string>();
        await foreach (var k in server.KeysAsync(pattern: $"{_prefix}:*{key.Hash}*")) entryKeys.Add(k!);
        Assert.True(entryKeys.Count > 5, $"{entryKeys.Count} keys");
        // Redis Cluster hashes only the first {...} of a key when there is one: every key's tag is the entry's hash,
        // so the whole entry is in one slot and entries spread over the cluster.
        Assert.All(entryKeys, k => Assert.Equal(key.Hash, HashTag(k)));
    }

    /// <summary>The part of a key Redis Cluster hashes: the text between the first '{' and the next '}', if not empty.</summary>
    private static string HashTag(string key)
    {
        int open = key.IndexOf('{', StringComparison.Ordinal);
        int close = open < 0 ? -1 : key.IndexOf('}', open + 1);
        return close > open + 1 ? key[(open + 1)..close] : key;
    }
}
