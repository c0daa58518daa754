using KVLink.Core.Caching;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Caching;

public sealed class MemoryAndFileStoreTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-store-tests", Guid.NewGuid().ToString("N"));

    // Entry of 7 tokens: 2 x (2x2x7x16) fp32 = 3,584 bytes.
    private const long EntryBytes = 3584;

    private static async Task<KvCacheKey[]> Fill(IKvCacheStore store, int n, Func<int, int>? tokens = null)
    {
        var keys = Enumerable.Range(0, n).Select(i => CacheTestData.Key($"e{i}")).ToArray();
        for (int i = 0; i < n; i++) { using var e = CacheTestData.Entry(keys[i], tokens: tokens?.Invoke(i) ?? 7); await store.PutAsync(keys[i], e); }
        return keys;
    }

    [Fact]
    public async Task Lru_evicts_the_least_recently_used_and_respects_the_budget()
    {
        using var store = new MemoryKvCacheStore(new() { ByteBudget = 3 * EntryBytes, Policy = MemoryKvCacheStoreOptions.EvictionPolicy.Lru });
        var keys = await Fill(store, 3);
        (await store.GetAsync(keys[0]))!.Dispose();          // e0 now more recent than e1
        using (var e = CacheTestData.Entry(CacheTestData.Key("new"))) await store.PutAsync(e.Key, e);
        Assert.False(await store.ContainsAsync(keys[1]));
        Assert.True(await store.ContainsAsync(keys[0]));
        Assert.True(store.ByteSize <= 3 * EntryBytes);
        Assert.Equal(1, store.Statistics.Evictions);
    }

    [Fact]
    public async Task Lfu_evicts_the_least_frequently_used()
    {
        using var store = new MemoryKvCacheStore(new() { ByteBudget = 3 * EntryBytes, Policy = MemoryKvCacheStoreOptions.EvictionPolicy.Lfu });
        var keys = await Fill(store, 3);
        for (int i = 0; i < 3; i++) (await store.GetAsync(keys[0]))!.Dispose();
        (await store.GetAsync(keys[2]))!.Dispose();
        (await store.GetAsync(keys[1]))!.Dispose();
        (await store.GetAsync(keys[1]))!.Dispose();
        using (var e = CacheTestData.Entry(CacheTestData.Key("new"))) await store.PutAsync(e.Key, e);
        Assert.False(await store.ContainsAsync(keys[2]));     // one hit, although most recently... e1 was later
        Assert.True(await store.ContainsAsync(keys[0]));
        Assert.True(await store.ContainsAsync(keys[1]));
    }

    [Fact]
    public async Task Cost_aware_keeps_entries_that_save_more_recompute_per_byte()
    {
        // Same bytes per token, but bf16 entries cost half the bytes for the same tokens: they are worth more per byte.
        using var store = new MemoryKvCacheStore(new() { ByteBudget = 4 * EntryBytes, Policy = MemoryKvCacheStoreOptions.EvictionPolicy.CostAware });
        var cheap = CacheTestData.Key("bf16");
        using (var e = CacheTestData.Entry(cheap, tokens: 14, dtype: ScalarType.BFloat16)) await store.PutAsync(cheap, e);  // 3,584 bytes for 14 tokens
        var dear = CacheTestData.Key("fp32");
        using (var e = CacheTestData.Entry(dear, tokens: 7)) await store.PutAsync(dear, e);                                  // 3,584 bytes for 7 tokens
        var later = await Fill(store, 2);
        using (var e = CacheTestData.Entry(CacheTestData.Key("new"))) await store.PutAsync(e.Key, e);
        // fp32 and the two later entries are all worth 7 tokens / 3,584 bytes; the oldest of them (fp32) goes first.
        Assert.True(await store.ContainsAsync(cheap));
        Assert.False(await store.ContainsAsync(dear));
        Assert.True(await store.ContainsAsync(later[0]));
    }

    [Fact]
    public async Task Pinned_entries_are_never_evicted_and_oversized_entries_are_not_kept()
    {
        using var store = new MemoryKvCacheStore(new() { ByteBudget = 2 * EntryBytes });
        var keys = await Fill(store, 2);
        store.Pin(keys[0]);
        store.Pin(keys[1]);
        using (var e = CacheTestData.Entry(CacheTestData.Key("new"))) await store.PutAsync(e.Key, e);
        Assert.False(await store.ContainsAsync(CacheTestData.Key("new")));
        Assert.True(await store.ContainsAsync(keys[0]) && await store.ContainsAsync(keys[1]));
        store.Unpin(keys[0]);
        using (var e = CacheTestData.Entry(CacheTestData.Key("new"))) await store.PutAsync(e.Key, e);
        Assert.False(await store.ContainsAsync(keys[0]));
        using (var e = CacheTestData.Entry(CacheTestData.Key("huge"), tokens: 100)) await store.PutAsync(e.Key, e);
        Assert.False(await store.ContainsAsync(CacheTestData.Key("huge")));
    }

    [Fact]
    public async Task Evicting_an_entry_a_reader_still_holds_leaves_the_reader_valid()
    {
        using var store = new MemoryKvCacheStore(new() { ByteBudget = EntryBytes });
        var key = CacheTestData.Key("held");
        using var original = CacheTestData.Entry(key);
        await store.PutAsync(key, original);
        using var held = await store.GetAsync(key);
        using (var e = CacheTestData.Entry(CacheTestData.Key("other"))) await store.PutAsync(e.Key, e);
        Assert.False(await store.ContainsAsync(key));
        CacheTestData.AssertSame(original, held!);
    }

    [Fact]
    public async Task File_store_recovers_its_index_after_a_restart_and_evicts_by_budget_across_instances()
    {
        string dir = Path.Combine(_folder, "restart");
        KvCacheKey[] keys;
        long size;
        {
            var store = new FileKvCacheStore(dir);
            keys = await Fill(store, 3);
            size = new FileInfo(store.PathOf(keys[0])).Length;
        }
        var reopened = new FileKvCacheStore(dir, new() { ByteBudget = 3 * size });
        Assert.Equal(3, reopened.Statistics.Entries);
        Assert.Equal(3 * size, reopened.Statistics.Bytes);
        using (var e = await reopened.GetAsync(keys[1])) CacheTestData.AssertSame(CacheTestData.Entry(keys[1]), e!);
        File.SetLastWriteTimeUtc(reopened.PathOf(keys[0]), DateTime.UtcNow.AddMinutes(-10));
        File.SetLastWriteTimeUtc(reopened.PathOf(keys[2]), DateTime.UtcNow.AddMinutes(-5));
        // A second instance (another process, say) writes into the same directory: the oldest file goes.
        var other = new FileKvCacheStore(dir, new() { ByteBudget = 3 * size + 64 });
        using (var e = CacheTestData.Entry(CacheTestData.Key("fourth"))) await other.PutAsync(e.Key, e);
        Assert.False(File.Exists(reopened.PathOf(keys[0])));
        Assert.True(File.Exists(reopened.PathOf(keys[1])) && File.Exists(reopened.PathOf(keys[2])));
        Assert.Null(await reopened.GetAsync(keys[0]));
        Assert.All(Directory.GetFiles(dir), f => Assert.Matches("^[0-9a-f]{16}-[0-9a-f]{16}-[0-9a-f]{16}-[0-9a-f]{32}\\.kvc$", Path.GetFileName(f)));
    }

    [Fact]
    public async Task Hostile_document_ids_never_leave_the_directory()
    {
        string dir = Path.Combine(_folder, "inner");
        var store = new FileKvCacheStore(dir);
        var key = CacheTestData.Key("../../escape/" + new string('x', 300) + "\0/etc/passwd");
        using var e = CacheTestData.Entry(key);
        await store.PutAsync(key, e);
        Assert.Equal(dir, Path.GetDirectoryName(store.PathOf(key)));
        Assert.Single(Directory.GetFiles(_folder, "*", SearchOption.AllDirectories));
        using var back = await store.GetAsync(key);
        CacheTestData.AssertSame(e, back!);
    }

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
