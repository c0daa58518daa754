using KVLink.Core.Redis;
using KVLink.Core.Caching;
using Microsoft.Extensions.Caching.Distributed;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Caching;

/// <summary>What every store must do: round trip, tenant isolation, invalidation, corruption as a miss, concurrency.</summary>
[Collection(GarnetCollection.Name)]
public sealed class StoreContractTests(GarnetFixture garnet) : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-store-tests", Guid.NewGuid().ToString("N"));
    private readonly string _prefix = "t" + Guid.NewGuid().ToString("N")[..12];

    public static TheoryData<string> Kinds => new() { "memory", "file", "redis", "distributed", "tiered" };

    // The contract is about what comes back, not how fast: a generous per-call limit keeps an 8 MiB entry of 2,048 chunks
    // from timing out into a miss on a loaded machine (the 2 s default and its circuit are tested in RemoteStoreCircuitTests).
    private static readonly TimeSpan Patient = TimeSpan.FromSeconds(60);

    private IKvCacheStore Create(string kind) => kind switch
    {
        "memory" => new MemoryKvCacheStore(),
        "file" => new FileKvCacheStore(Path.Combine(_folder, "file")),
        "redis" => new RedisKvCacheStore(garnet.Connection, new RedisKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = 4096, OperationTimeout = Patient }),
        "distributed" => new DistributedCacheKvCacheStore(garnet.DistributedCache, new ChunkedKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = 4096, OperationTimeout = Patient }),
        "tiered" => new TieredKvCacheStore(new MemoryKvCacheStore(), new FileKvCacheStore(Path.Combine(_folder, "tier-file")),
            new RedisKvCacheStore(garnet.Connection, new RedisKvCacheStoreOptions { KeyPrefix = _prefix + "x", OperationTimeout = Patient })),
        _ => throw new ArgumentException(kind),
    };

    [Theory, MemberData(nameof(Kinds))]
    public async Task Round_trip_returns_an_identical_entry_the_caller_owns(string kind)
    {
        var store = Create(kind);
        var key = CacheTestData.Key();
        using (var entry = CacheTestData.Entry(key, tokens: 40))
        {
            await store.PutAsync(key, entry);
            using var first = await store.GetAsync(key);
            CacheTestData.AssertSame(entry, first!);
        }
        // The caller's entry and the first reader's copy are disposed: the store's own copy is unaffected.
        using var again = await store.GetAsync(key);
        Assert.NotNull(again);
        Assert.Equal(40, again!.Length);
        Assert.True(await store.ContainsAsync(key));
        Assert.True(store.Statistics.Hits >= 2);
        Assert.True(await store.RemoveAsync(key));
        Assert.Null(await store.GetAsync(key));
        Assert.False(await store.ContainsAsync(key));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("distributed")]
    public async Task Eight_MiB_entry_round_trips_through_the_Redis_protocol_server(string kind)
    {
        var store = Create(kind);
        var key = CacheTestData.Key("big");
        using var entry = CacheTestData.Entry(key, tokens: 8192, layers: 4); // 2 x 4x2x8192x16 fp32 = 8 MiB
        Assert.Equal(8L << 20, entry.ByteSize);
        await store.PutAsync(key, entry);
        using var back = await store.GetAsync(key);
        CacheTestData.AssertSame(entry, back!);
    }

    [Theory, MemberData(nameof(Kinds))]
    public async Task Tenant_A_never_reads_tenant_B_entries(string kind)
    {
        var store = Create(kind);
        var a = CacheTestData.Key("shared-doc", tenant: "A");
        var b = CacheTestData.Key("shared-doc", tenant: "B");
        using var entryA = CacheTestData.Entry(a, seed: 1);
        await store.PutAsync(a, entryA);
        Assert.Null(await store.GetAsync(b));
        Assert.False(await store.ContainsAsync(b));
        // A store refuses to file an entry under another tenant's key.
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.PutAsync(b, entryA));
        using var entryB = CacheTestData.Entry(b, seed: 2);
        await store.PutAsync(b, entryB);
        using var gotA = await store.GetAsync(a);
        using var gotB = await store.GetAsync(b);
        CacheTestData.AssertSame(entryA, gotA!);
        CacheTestData.AssertSame(entryB, gotB!);
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope(Tenant: "B")));
        Assert.Null(await store.GetAsync(b));
        Assert.NotNull(await store.GetAsync(a));
    }

    [Theory, MemberData(nameof(Kinds))]
    public async Task Invalidation_by_document_model_and_tenant(string kind)
    {
        var store = Create(kind);
        var keys = new[]
        {
            CacheTestData.Key("d1", "t1"), CacheTestData.Key("d1", "t1", slot: 1), CacheTestData.Key("d1", "t2"),
            CacheTestData.Key("d2", "t1"), CacheTestData.Key("d2", "t1", model: "model-b"),
        };
        foreach (var k in keys) { using var e = CacheTestData.Entry(k); await store.PutAsync(k, e); }

        Assert.Equal(2, await store.InvalidateAsync(new KvCacheScope("t1", null, "d1")));
        Assert.Null(await store.GetAsync(keys[0]));
        Assert.Null(await store.GetAsync(keys[1]));
        Assert.NotNull(await store.GetAsync(keys[2]));
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope(ModelFingerprint: "model-b")));
        Assert.Null(await store.GetAsync(keys[4]));
        Assert.NotNull(await store.GetAsync(keys[3]));
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope(Tenant: "t2")));
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope()));
        foreach (var k in keys) Assert.Null(await store.GetAsync(k));
    }

    [Theory, MemberData(nameof(Kinds))]
    public async Task Concurrent_readers_and_writers_only_ever_see_whole_entries(string kind)
    {
        var store = Create(kind);
        var keys = Enumerable.Range(0, 4).Select(i => CacheTestData.Key($"c{i}")).ToArray();
        var tasks = Enumerable.Range(0, 8).Select(worker => Task.Run(async () =>
        {
            for (int i = 0; i < 25; i++)
            {
                var key = keys[(worker + i) % keys.Length];
                if ((worker + i) % 3 == 0)
                {
                    using var e = CacheTestData.Entry(key, tokens: 5 + i % 4, seed: worker * 100 + i);
                    await store.PutAsync(key, e);
                }
                else if ((worker + i) % 11 == 0) await store.RemoveAsync(key);
                else
                {
                    using var got = await store.GetAsync(key);
                    if (got is null) continue;
                    Assert.Equal(key, got.Key);
                    // The entry is exactly one writer's entry: tensors, tokens and text all from the same seed.
                    using var expected = CacheTestData.Entry(key, tokens: got.Length, seed: SeedOf(got));
                    CacheTestData.AssertSame(expected, got);
                }
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        Assert.Equal(0, store.Statistics.Rejected);
    }

    /// <summary>Recovers the seed from the first token id (ids are (i*37+seed) % 1000, so id 0 is the seed).</summary>
    private static int SeedOf(DocumentKvCache e) => e.TokenIds[0];

    [Theory]
    [InlineData("file")]
    [InlineData("redis")]
    [InlineData("distributed")]
    [InlineData("tiered")]
    public async Task Truncated_bit_flipped_wrong_model_and_wrong_version_entries_are_counted_misses(string kind)
    {
        var store = Create(kind);
        var bytesStore = kind == "tiered" ? ((TieredKvCacheStore)store).Tiers[1] : store;
        var key = CacheTestData.Key("victim");
        using var entry = CacheTestData.Entry(key, tokens: 9);
        byte[] good = KvCacheFormat.Serialize(entry);
        var otherModel = KvCacheFormatTests.Resign(KvCacheFormatTests.Replace(good, "\"kvlink.model_fingerprint\":\"model-a\"", "\"kvlink.model_fingerprint\":\"model-z\""));
        var otherVersion = KvCacheFormatTests.Resign(KvCacheFormatTests.Replace(good, "\"kvlink.format_version\":\"1\"", "\"kvlink.format_version\":\"9\""));
        var flipped = (byte[])good.Clone();
        flipped[good.Length - 3] ^= 0x10;
        var bads = new[] { good[..(good.Length / 2)], flipped, otherModel, otherVersion };

        long rejectedBefore = bytesStore.Statistics.Rejected;
        foreach (var bad in bads)
        {
            await Plant(bytesStore, key, bad);
            Assert.Null(await store.GetAsync(key));
        }
        Assert.Equal(rejectedBefore + bads.Length, bytesStore.Statistics.Rejected);
    }

    /// <summary>Writes raw bytes where the store keeps the entry of <paramref name="key"/>, bypassing its writer.</summary>
    private async Task Plant(IKvCacheStore store, KvCacheKey key, byte[] bytes)
    {
        switch (store)
        {
            case FileKvCacheStore file:
                File.WriteAllBytes(file.PathOf(key), bytes);
                break;
            case RedisKvCacheStore redis:
                // One chunk holding all the bytes (its manifest's chunk size at least the 1 KiB minimum).
                var m = new ChunkManifest(Guid.NewGuid().ToString("N"), 1, Math.Max(1024, bytes.Length), bytes.Length, key.TenantHash, key.ModelHash, key.DocumentHash);
                var db = garnet.Connection.GetDatabase();
                await db.StringSetAsync(redis.Chunk(key.Hash, m.Write, 0), bytes);
                await db.StringSetAsync(redis.Manifest(key.Hash), m.ToString());
                break;
            case DistributedCacheKvCacheStore distributed:
                var dm = new ChunkManifest(Guid.NewGuid().ToString("N"), 1, Math.Max(1024, bytes.Length), bytes.Length, key.TenantHash, key.ModelHash, key.DocumentHash);
                await garnet.DistributedCache.SetAsync(distributed.ChunkKey(key, dm.Write, 0), bytes);
                await garnet.DistributedCache.SetAsync(distributed.ManifestKey(key), System.Text.Encoding.ASCII.GetBytes(dm.ToString()));
                break;
            default: throw new ArgumentException(store.GetType().Name);
        }
    }

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
