using KVLink.Core.Caching;

namespace KVLink.Core.Tests.Caching;

/// <summary>Memory over file over IDistributedCache (Garnet): promotion, write-through, and each tier's own counters.</summary>
[Collection(GarnetCollection.Name)]
public sealed class TieredStoreTests(GarnetFixture garnet) : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-store-tests", Guid.NewGuid().ToString("N"));
    private readonly string _prefix = "tt" + Guid.NewGuid().ToString("N")[..12];
    private readonly List<IDisposable> _owned = [];

    private (TieredKvCacheStore Tiered, MemoryKvCacheStore Memory, FileKvCacheStore File, DistributedCacheKvCacheStore Distributed) Create(
        long memoryBudget = long.MaxValue, long fileBudget = long.MaxValue, KvCacheQuantization fileQuantization = KvCacheQuantization.None)
    {
        var memory = new MemoryKvCacheStore(new() { ByteBudget = memoryBudget });
        var file = new FileKvCacheStore(_folder, new() { ByteBudget = fileBudget, Quantization = fileQuantization });
        var distributed = new DistributedCacheKvCacheStore(garnet.DistributedCache, new() { KeyPrefix = _prefix, ChunkBytes = 4096 });
        _owned.Add(memory);
        _owned.Add(distributed);
        return (new TieredKvCacheStore(memory, file, distributed), memory, file, distributed);
    }

    private static long Serialized(DocumentKvCache e, KvCacheQuantization c = KvCacheQuantization.None) => KvCacheFormat.Serialize(e, c).Length;

    [Fact]
    public async Task An_entry_only_in_the_file_tier_is_promoted_to_memory_and_then_served_from_memory()
    {
        var (tiered, memory, file, distributed) = Create();
        var key = CacheTestData.Key("in-file");
        using var entry = CacheTestData.Entry(key, tokens: 20);
        await file.PutAsync(key, entry);

        using (var first = await tiered.GetAsync(key)) CacheTestData.AssertSame(entry, first!);
        Assert.Equal((0L, 1L, 1L, 1L, entry.ByteSize), (memory.Statistics.Hits, memory.Statistics.Misses, memory.Statistics.Writes, memory.Statistics.Entries, memory.Statistics.Bytes));
        Assert.Equal((1L, 0L, Serialized(entry)), (file.Statistics.Hits, file.Statistics.Misses, file.Statistics.BytesRead));
        Assert.Equal((0L, 0L, 0L), (distributed.Statistics.Hits, distributed.Statistics.Misses, distributed.Statistics.Writes));

        using (var second = await tiered.GetAsync(key)) CacheTestData.AssertSame(entry, second!);
        Assert.Equal((1L, 1L, entry.ByteSize), (memory.Statistics.Hits, memory.Statistics.Misses, memory.Statistics.BytesRead));
        Assert.Equal(1L, file.Statistics.Hits);   // not asked again
        Assert.Equal((2L, 0L), (tiered.Statistics.Hits, tiered.Statistics.Misses));
    }

    [Fact]
    public async Task An_entry_only_in_the_distributed_tier_is_promoted_into_both_faster_tiers()
    {
        var (tiered, memory, file, distributed) = Create();
        var key = CacheTestData.Key("in-redis");
        using var entry = CacheTestData.Entry(key, tokens: 20);
        await distributed.PutAsync(key, entry);

        using (var first = await tiered.GetAsync(key)) CacheTestData.AssertSame(entry, first!);
        Assert.Equal((1L, 1L, 1L), (memory.Statistics.Misses, memory.Statistics.Writes, memory.Statistics.Entries));
        Assert.Equal((1L, 1L, 1L), (file.Statistics.Misses, file.Statistics.Writes, file.Statistics.Entries));
        Assert.Equal(1L, distributed.Statistics.Hits);

        // Served from memory; once memory drops it, the file tier serves it and memory gets it back.
        using (var second = await tiered.GetAsync(key)) Assert.NotNull(second);
        Assert.Equal(1L, memory.Statistics.Hits);
        Assert.True(await memory.RemoveAsync(key));
        using (var third = await tiered.GetAsync(key)) CacheTestData.AssertSame(entry, third!);
        Assert.Equal((1L, 2L), (file.Statistics.Hits, memory.Statistics.Writes));
        Assert.Equal(1L, distributed.Statistics.Hits);
        Assert.Equal((3L, 0L), (tiered.Statistics.Hits, tiered.Statistics.Misses));

        // A key in no tier is one miss in each tier and one in the tiered view.
        Assert.Null(await tiered.GetAsync(CacheTestData.Key("nowhere")));
        Assert.Equal((3L, 2L, 1L, 1L), (memory.Statistics.Misses, file.Statistics.Misses, distributed.Statistics.Misses, tiered.Statistics.Misses));
    }

    [Fact]
    public async Task A_write_goes_through_to_every_tier_each_counting_its_own_bytes()
    {
        var (tiered, memory, file, distributed) = Create(fileQuantization: KvCacheQuantization.Int8PerChannel);
        var key = CacheTestData.Key("everywhere");
        using var entry = CacheTestData.Entry(key, tokens: 64);
        await tiered.PutAsync(key, entry);

        foreach (var tier in tiered.Tiers) Assert.True(await tier.ContainsAsync(key));
        Assert.Equal((1L, 1L, entry.ByteSize, entry.ByteSize), (memory.Statistics.Writes, memory.Statistics.Entries, memory.Statistics.Bytes, memory.Statistics.BytesWritten));
        long int8 = Serialized(entry, KvCacheQuantization.Int8PerChannel);
        Assert.Equal((1L, 1L, int8, int8), (file.Statistics.Writes, file.Statistics.Entries, file.Statistics.Bytes, file.Statistics.BytesWritten));
        long plain = Serialized(entry);
        Assert.True(int8 < plain);
        Assert.Equal((1L, 1L, plain, plain), (distributed.Statistics.Writes, distributed.Statistics.Entries, distributed.Statistics.Bytes, distributed.Statistics.BytesWritten));
        Assert.Equal((1L, entry.ByteSize), (tiered.Statistics.Writes, tiered.Statistics.BytesWritten));
        // No tier was read.
        Assert.All(tiered.Tiers, t => Assert.Equal((0L, 0L), (t.Statistics.Hits, t.Statistics.Misses)));
    }

    [Fact]
    public async Task Each_tier_evicts_under_its_own_budget_and_counts_its_own_evictions()
    {
        var keys = Enumerable.Range(0, 3).Select(i => CacheTestData.Key($"e{i}")).ToArray();
        using var probe = CacheTestData.Entry(keys[0]);
        long serialized = Serialized(probe);
        // Memory holds one entry, the file tier two, the distributed tier all.
        var (tiered, memory, file, distributed) = Create(memoryBudget: probe.ByteSize, fileBudget: 2 * serialized + serialized / 2);
        foreach (var k in keys) { using var e = CacheTestData.Entry(k); await tiered.PutAsync(k, e); }

        Assert.Equal((2L, 1L, probe.ByteSize), (memory.Statistics.Evictions, memory.Statistics.Entries, memory.Statistics.Bytes));
        Assert.Equal((1L, 2L, 2 * serialized), (file.Statistics.Evictions, file.Statistics.Entries, file.Statistics.Bytes));
        Assert.Equal((0L, 3L, 3 * serialized), (distributed.Statistics.Evictions, distributed.Statistics.Entries, distributed.Statistics.Bytes));

        // e0 is left only in the distributed tier: reading it promotes it, which evicts once more in each faster tier.
        Assert.False(await memory.ContainsAsync(keys[0]));
        Assert.False(await file.ContainsAsync(keys[0]));
        using (var back = await tiered.GetAsync(keys[0])) CacheTestData.AssertSame(probe, back!);
        Assert.Equal((0L, 1L, 3L), (memory.Statistics.Hits, memory.Statistics.Misses, memory.Statistics.Evictions));
        Assert.Equal((0L, 1L, 2L), (file.Statistics.Hits, file.Statistics.Misses, file.Statistics.Evictions));
        Assert.Equal((1L, 0L, 0L), (distributed.Statistics.Hits, distributed.Statistics.Misses, distributed.Statistics.Evictions));
        Assert.True(await memory.ContainsAsync(keys[0]));
        Assert.True(await file.ContainsAsync(keys[0]));
    }

    [Fact]
    public async Task Invalidation_reports_distinct_entries_and_each_tier_counts_its_own_removals()
    {
        var (tiered, memory, file, distributed) = Create();
        var onlyMemory = CacheTestData.Key("m", tenant: "T");
        var onlyDistributed = CacheTestData.Key("d", tenant: "T");
        var everywhere = CacheTestData.Key("all", tenant: "T");
        var otherTenant = CacheTestData.Key("all", tenant: "U");
        using (var e = CacheTestData.Entry(onlyMemory)) await memory.PutAsync(onlyMemory, e);
        using (var e = CacheTestData.Entry(onlyDistributed)) await distributed.PutAsync(onlyDistributed, e);
        using (var e = CacheTestData.Entry(everywhere)) await tiered.PutAsync(everywhere, e);
        using (var e = CacheTestData.Entry(otherTenant)) await tiered.PutAsync(otherTenant, e);

        // Three distinct entries of tenant T went (not 5 copies, not the 2 of the fullest tier).
        Assert.Equal(3, await tiered.InvalidateAsync(new KvCacheScope(Tenant: "T")));
        Assert.Equal((2L, 1L, 2L, 3L), (memory.Statistics.Removals, file.Statistics.Removals, distributed.Statistics.Removals, tiered.Statistics.Removals));
        Assert.All(tiered.Tiers, t => Assert.Equal(1L, t.Statistics.Entries));
        using var kept = await tiered.GetAsync(otherTenant);
        Assert.NotNull(kept);

        // A tiered store inside a tiered store counts the same way.
        var outer = new TieredKvCacheStore(tiered);
        Assert.Equal(1, await outer.InvalidateAsync(new KvCacheScope()));
        Assert.Equal(4L, tiered.Statistics.Removals);
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
