using KVLink.Core.Caching;
using KVLink.Core.Redis;
using KVLink.Core.Tests.Caching;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Cluster;

/// <summary>
/// Both server-backed stores on a real 3+3 Redis Cluster: round trips spread over every master, entries of many
/// chunks, tenant isolation, invalidation of a tenant, model or document whose entries live on different masters,
/// and TTL. Run against redis-server processes and against in-process Garnet by the derived classes.
/// </summary>
public abstract class ClusterStoreTests(ClusterFixture fixture)
{
    private readonly string _prefix = "c" + Guid.NewGuid().ToString("N")[..12];

    // A generous per-call bound: these tests check behaviour on a healthy cluster, and the whole suite on a shared
    // 2-core machine can stall a call past the 2 s default (a miss counted as Unavailable, which is not what is tested here).
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    protected IKvCacheStore Create(string kind, int chunkBytes = 4096, TimeSpan? ttl = null) => kind switch
    {
        "redis" => new RedisKvCacheStore(fixture.Connection, new RedisKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = chunkBytes, TimeToLive = ttl, OperationTimeout = Bound }),
        "distributed" => new DistributedCacheKvCacheStore(fixture.DistributedCache, new ChunkedKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = chunkBytes, TimeToLive = ttl, OperationTimeout = Bound }),
        _ => throw new ArgumentException(kind),
    };

    private async Task<int> MastersHolding(IEnumerable<KvCacheKey> keys)
    {
        var ports = new HashSet<int>();
        foreach (var k in keys) ports.Add(await fixture.Cluster.MasterPortOfSlotAsync(HashSlots.Of(k.Hash)));
        return ports.Count;
    }

    protected async Task Round_trips_spread_over_every_master(string kind)
    {
        var store = Create(kind);
        Assert.True(store is not RedisKvCacheStore r || r.IsCluster, "the connection should see a cluster");
        var keys = Enumerable.Range(0, 24).Select(i => CacheTestData.Key($"doc-{i}")).ToArray();
        Assert.Equal(LocalCluster.Masters, await MastersHolding(keys));
        for (int i = 0; i < keys.Length; i++) { using var e = CacheTestData.Entry(keys[i], tokens: 20 + i, seed: i); await store.PutAsync(keys[i], e); }
        for (int i = 0; i < keys.Length; i++)
        {
            using var expected = CacheTestData.Entry(keys[i], tokens: 20 + i, seed: i);
            using var got = await store.GetAsync(keys[i]);
            CacheTestData.AssertSame(expected, got!);
            Assert.True(await store.ContainsAsync(keys[i]));
        }
        foreach (var k in keys) Assert.True(await store.RemoveAsync(k));
        foreach (var k in keys) Assert.Null(await store.GetAsync(k));
        var s = store.Statistics;
        Assert.Equal((24L, 0L, 24L, 0L, 0L), (s.Writes, s.FailedWrites, s.Hits, s.Unavailable, s.Rejected));
    }

    protected async Task An_entry_of_hundreds_of_chunks_round_trips(string kind)
    {
        var store = Create(kind, chunkBytes: 16 << 10);
        var key = CacheTestData.Key("big");
        using var entry = CacheTestData.Entry(key, tokens: 8192, layers: 4); // 8 MiB: 512 chunks of 16 KiB
        await store.PutAsync(key, entry);
        using var back = await store.GetAsync(key);
        CacheTestData.AssertSame(entry, back!);
        Assert.Equal(0, store.Statistics.Unavailable);
    }

    protected async Task Tenants_are_isolated(string kind)
    {
        var store = Create(kind);
        var a = CacheTestData.Key("shared-doc", tenant: "A");
        var b = CacheTestData.Key("shared-doc", tenant: "B");
        using var entryA = CacheTestData.Entry(a, seed: 1);
        await PutReachingAsync(store, a, entryA); // both writes retried alike: under load either one can pass the timeout
        Assert.Null(await store.GetAsync(b));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.PutAsync(b, entryA));
        using var entryB = CacheTestData.Entry(b, seed: 2);
        await PutReachingAsync(store, b, entryB);
        using (var gotA = await GetReachingAsync(store, a)) CacheTestData.AssertSame(entryA, gotA!);
        using (var gotB = await GetReachingAsync(store, b)) CacheTestData.AssertSame(entryB, gotB!);
    }

    // While the whole suite loads the 2 cores, one cluster command can pass the store's operation timeout; the store then
    // answers a miss (or drops the write) and counts it as Unavailable (or FailedWrites), as it should in production.
    // These retry only such counted failures, so a real miss (nothing counted) still fails the test at once.
    private static async Task PutReachingAsync(IKvCacheStore store, KvCacheKey key, DocumentKvCache entry)
    {
        for (int attempt = 0; attempt < 3; attempt++)
        {
            long failed = store.Statistics.FailedWrites;
            await store.PutAsync(key, entry);
            if (store.Statistics.FailedWrites == failed) return;
        }
    }

    private static async Task<DocumentKvCache?> GetReachingAsync(IKvCacheStore store, KvCacheKey key)
    {
        for (int attempt = 0; ; attempt++)
        {
            long unavailable = store.Statistics.Unavailable;
            var got = await store.GetAsync(key);
            if (got is not null || store.Statistics.Unavailable == unavailable || attempt == 2) return got;
        }
    }

    protected async Task Invalidation_of_a_document_model_or_tenant_reaches_every_master(string kind)
    {
        var store = Create(kind);
        var invalidation = store;
        var a = Enumerable.Range(0, 12).Select(i => CacheTestData.Key($"a-doc-{i}", tenant: "A")).ToList();
        var aOtherModel = Enumerable.Range(0, 6).Select(i => CacheTestData.Key($"a-doc-{i}", tenant: "A", model: "model-b")).ToList();
        var b = Enumerable.Range(0, 12).Select(i => CacheTestData.Key($"b-doc-{i}", tenant: "B")).ToList();
        Assert.True(await MastersHolding(a) > 1 && await MastersHolding(aOtherModel) > 1, "the test needs entries on several masters");
        foreach (var k in a.Concat(aOtherModel).Concat(b)) { using var e = CacheTestData.Entry(k); await store.PutAsync(k, e); }

        // A document: its entries under both models, on whichever masters hold them.
        Assert.Equal(2, await invalidation.InvalidateAsync(new KvCacheScope(DocumentId: "a-doc-0")));
        Assert.Null(await store.GetAsync(a[0]));
        Assert.Null(await store.GetAsync(aOtherModel[0]));
        // A model within a tenant.
        Assert.Equal(5, await invalidation.InvalidateAsync(new KvCacheScope(Tenant: "A", ModelFingerprint: "model-b")));
        foreach (var k in aOtherModel) Assert.False(await store.ContainsAsync(k));
        // A tenant: the rest of A, none of B.
        Assert.Equal(11, await invalidation.InvalidateAsync(new KvCacheScope(Tenant: "A")));
        foreach (var k in a) Assert.Null(await store.GetAsync(k));
        foreach (var k in b) { using var got = await store.GetAsync(k); Assert.NotNull(got); }
        Assert.Equal(0, await invalidation.InvalidateAsync(new KvCacheScope(Tenant: "A")));
        Assert.Equal(12, await invalidation.InvalidateAsync(new KvCacheScope(Tenant: "B")));
    }

    protected async Task Entries_carry_the_TTL_and_expire(string kind)
    {
        var key = CacheTestData.Key("ttl");
        var store = Create(kind, ttl: TimeSpan.FromMinutes(10));
        using (var e = CacheTestData.Entry(key, tokens: 600)) await store.PutAsync(key, e); // several chunks
        var db = fixture.Connection.GetDatabase();
        var manifestKey = kind == "redis" ? (RedisKey)((RedisKvCacheStore)store).Manifest(key.Hash) : (RedisKey)$"dc:{_prefix}:v2:{key.TenantHash}:m:{key.Hash}";
        var ttl = await db.KeyTimeToLiveAsync(manifestKey);
        Assert.True(ttl is { } t && t > TimeSpan.Zero && t <= TimeSpan.FromMinutes(10), $"manifest TTL {ttl}");

        // A short TTL: the entry becomes a miss (waiting, bounded; nothing is asserted about how fast).
        var shortKey = CacheTestData.Key("ttl-short");
        var shortStore = Create(kind, ttl: TimeSpan.FromSeconds(1));
        using (var e = CacheTestData.Entry(shortKey)) await shortStore.PutAsync(shortKey, e);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await shortStore.ContainsAsync(shortKey) && DateTime.UtcNow < deadline) await Task.Delay(200);
        Assert.Null(await shortStore.GetAsync(shortKey));
    }
}

[Collection(RedisServerClusterCollection.Name)]
public sealed class RedisServerClusterStoreTests(RedisServerClusterFixture fixture) : ClusterStoreTests(fixture)
{
    [RedisServerFact] public Task Round_trips_spread_over_every_master_redis() => Round_trips_spread_over_every_master("redis");
    [RedisServerFact] public Task Round_trips_spread_over_every_master_distributed() => Round_trips_spread_over_every_master("distributed");
    [RedisServerFact] public Task An_entry_of_hundreds_of_chunks_round_trips_redis() => An_entry_of_hundreds_of_chunks_round_trips("redis");
    [RedisServerFact] public Task An_entry_of_hundreds_of_chunks_round_trips_distributed() => An_entry_of_hundreds_of_chunks_round_trips("distributed");
    [RedisServerFact] public Task Tenants_are_isolated_redis() => Tenants_are_isolated("redis");
    [RedisServerFact] public Task Tenants_are_isolated_distributed() => Tenants_are_isolated("distributed");
    [RedisServerFact] public Task Invalidation_reaches_every_master_redis() => Invalidation_of_a_document_model_or_tenant_reaches_every_master("redis");
    [RedisServerFact] public Task Invalidation_reaches_every_master_distributed() => Invalidation_of_a_document_model_or_tenant_reaches_every_master("distributed");
    [RedisServerFact] public Task Entries_carry_the_TTL_and_expire_redis() => Entries_carry_the_TTL_and_expire("redis");
    [RedisServerFact] public Task Entries_carry_the_TTL_and_expire_distributed() => Entries_carry_the_TTL_and_expire("distributed");
}

[Collection(GarnetClusterCollection.Name)]
public sealed class GarnetClusterStoreTests(GarnetClusterFixture fixture) : ClusterStoreTests(fixture)
{
    [Fact] public Task Round_trips_spread_over_every_master_redis() => Round_trips_spread_over_every_master("redis");
    [Fact] public Task Round_trips_spread_over_every_master_distributed() => Round_trips_spread_over_every_master("distributed");
    [Fact] public Task An_entry_of_hundreds_of_chunks_round_trips_redis() => An_entry_of_hundreds_of_chunks_round_trips("redis");
    [Fact] public Task An_entry_of_hundreds_of_chunks_round_trips_distributed() => An_entry_of_hundreds_of_chunks_round_trips("distributed");
    [Fact] public Task Tenants_are_isolated_redis() => Tenants_are_isolated("redis");
    [Fact] public Task Tenants_are_isolated_distributed() => Tenants_are_isolated("distributed");
    [Fact] public Task Invalidation_reaches_every_master_redis() => Invalidation_of_a_document_model_or_tenant_reaches_every_master("redis");
    [Fact] public Task Invalidation_reaches_every_master_distributed() => Invalidation_of_a_document_model_or_tenant_reaches_every_master("distributed");
    [Fact] public Task Entries_carry_the_TTL_and_expire_redis() => Entries_carry_the_TTL_and_expire("redis");
    [Fact] public Task Entries_carry_the_TTL_and_expire_distributed() => Entries_carry_the_TTL_and_expire("distributed");
}
