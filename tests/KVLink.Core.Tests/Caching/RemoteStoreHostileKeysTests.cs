using KVLink.Core.Redis;
using System.Text;
using KVLink.Core.Caching;
using Microsoft.Extensions.Caching.Distributed;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Caching;

/// <summary>
/// What another writer on a shared server can leave under the store's keys: manifests that claim impossible chunk
/// counts or sizes, chunks of the wrong size (keys of the wrong Redis type: <see cref="RedisForeignKeysTests"/>). Each read is a counted miss, with no
/// exception and no more asked of the server than the manifest (and at most one batch of chunks); each write still lands. On the real in-process Garnet server.
/// </summary>
[Collection(GarnetCollection.Name)]
public sealed class RemoteStoreHostileKeysTests(GarnetFixture garnet)
{
    private readonly string _prefix = "h" + Guid.NewGuid().ToString("N")[..12];
    private IDatabase Db => garnet.Connection.GetDatabase();

    /// <summary>What the stores below sent to the server.</summary>
    private readonly CommandRecorder _sent = new();

    private RedisKvCacheStore Redis(long maxEntryBytes = 1L << 30) =>
        new(_sent.Wrap(garnet.Connection), new RedisKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = 4096, MaxEntryBytes = maxEntryBytes });

    private DistributedCacheKvCacheStore Distributed(long maxEntryBytes = 1L << 30) =>
        new(_sent.Wrap(garnet.DistributedCache), new ChunkedKvCacheStoreOptions { KeyPrefix = _prefix, ChunkBytes = 4096, MaxEntryBytes = maxEntryBytes });

    /// <summary>The store's manifest key for <paramref name="key"/>.</summary>
    private static string ManifestKey(IKvCacheStore store, KvCacheKey key) =>
        store is RedisKvCacheStore r ? r.Manifest(key.Hash) : ((DistributedCacheKvCacheStore)store).ManifestKey(key);

    /// <summary>Manifests whose claims do not hold together, each with the key's own tenant, model and document.</summary>
    public static TheoryData<string, string> BadManifests => new()
    {
        { "redis", "{w} 1048576 1024 1073741824" },     // 1 GiB in 1 KiB chunks: over the store's 64 MiB maximum below
        { "distributed", "{w} 1048576 1024 1073741824" },
        { "redis", "{w} 1048576 4096 5000" },            // chunk count not the one length and chunk size imply
        { "distributed", "{w} 1000000 4096 5000" },
        { "redis", "{w} 2 512 1000" },                   // chunk size under the 1 KiB minimum
        { "distributed", "{w} 0 4096 0" },               // empty
        { "redis", "{w} -1 4096 5000" },
        { "distributed", "{w} 99999999999 4096 5000" },  // overflows int
    };

    [Theory, MemberData(nameof(BadManifests))]
    public async Task A_manifest_whose_chunk_count_its_length_does_not_imply_is_a_fast_rejected_miss(string kind, string claim)
    {
        var key = CacheTestData.Key("claims");
        string text = $"v2 {claim.Replace("{w}", Guid.NewGuid().ToString("N"), StringComparison.Ordinal)} {key.TenantHash} {key.ModelHash} {key.DocumentHash}";
        IKvCacheStore store;
        if (kind == "redis") { var r = Redis(64 << 20); await Db.StringSetAsync(r.Manifest(key.Hash), text); store = r; }
        else { var d = Distributed(64 << 20); await garnet.DistributedCache.SetAsync(d.ManifestKey(key), Encoding.ASCII.GetBytes(text)); store = d; }

        // Refused before any chunk is asked for: the manifest is the one key read, so no million-key request and no
        // million tasks (those cost 350 MiB and seconds). GC.GetTotalAllocatedBytes counts every thread, and tests of
        // other collections allocate meanwhile (once 119 MB within one 15 ms read), so the bound holds the least of
        // five reads: what the read itself allocates is in every one of them, another test's burst in few.
        const int reads = 5;
        long least = long.MaxValue;
        for (int i = 0; i < reads; i++)
        {
            _sent.Clear();
            long allocated = GC.GetTotalAllocatedBytes(precise: true);
            Assert.Null(await store.GetAsync(key));
            least = Math.Min(least, GC.GetTotalAllocatedBytes(precise: true) - allocated);
            var read = Assert.Single(_sent.Commands);
            Assert.Equal([ManifestKey(store, key)], read.Keys);
        }
        Assert.True(least < 16 << 20, $"each of {reads} reads allocated at least {least} bytes");
        var s = store.Statistics;
        Assert.Equal(((long)reads, (long)reads, 0L), (s.Misses, s.Rejected, s.Unavailable));
    }

    /// <summary>Plants a manifest of <paramref name="claim"/> ("chunks chunkBytes length") for <paramref name="key"/>; returns the store and the planted write id.</summary>
    private async Task<(IKvCacheStore Store, string Write)> Plant(string kind, KvCacheKey key, string claim)
    {
        string write = Guid.NewGuid().ToString("N");
        string text = $"v2 {write} {claim} {key.TenantHash} {key.ModelHash} {key.DocumentHash}";
        if (kind == "redis") { var r = Redis(); await Db.StringSetAsync(r.Manifest(key.Hash), text); return (r, write); }
        var d = Distributed();
        await garnet.DistributedCache.SetAsync(d.ManifestKey(key), Encoding.ASCII.GetBytes(text));
        return (d, write);
    }

    /// <summary>1,000,000 chunks of 1 KiB (1,024,000,000 bytes): under the 1 GiB maximum, but 3.8 times the 262,144 chunks of 4 KiB the store's own largest entry has.</summary>
    private const string MillionChunks = "1000000 1024 1024000000";

    /// <summary>200,000 chunks of 4 KiB: a count the store's own largest entry could have, none of them there.</summary>
    private const string AbsentChunksWithinBound = "200000 4096 819200000";

    [Theory]
    [InlineData("redis")]
    [InlineData("distributed")]
    public async Task A_manifest_naming_more_chunks_than_the_stores_largest_entry_has_is_rejected_before_any_chunk_is_named(string kind)
    {
        var key = CacheTestData.Key("million-chunks");
        var (store, _) = await Plant(kind, key, MillionChunks);
        _sent.Clear();
        Assert.Null(await store.GetAsync(key));
        var read = Assert.Single(_sent.Commands);
        Assert.Equal([ManifestKey(store, key)], read.Keys);
        Assert.Equal((1L, 1L, 0L), (store.Statistics.Misses, store.Statistics.Rejected, store.Statistics.Unavailable));
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("distributed")]
    public async Task A_consistent_manifest_of_chunks_that_are_not_there_is_a_plain_miss_after_one_batch(string kind)
    {
        // Within the store's bound, so the chunks are asked for, in bounded batches; the first gap ends the read.
        var key = CacheTestData.Key("absent-chunks");
        var (store, _) = await Plant(kind, key, AbsentChunksWithinBound);
        _sent.Clear();
        Assert.Null(await store.GetAsync(key));
        // The manifest, then one batch of chunks (the Redis store's one 1,024-key MGET, the other's 16 parallel reads),
        // whose gaps end the read: not 200,000 keys.
        var commands = _sent.Commands;
        Assert.Equal([ManifestKey(store, key)], commands[0].Keys);
        var chunkKeys = commands.Skip(1).SelectMany(c => c.Keys).ToList();
        Assert.Equal(kind == "redis" ? 1 : 16, commands.Count - 1);
        Assert.Equal(kind == "redis" ? 1024 : 16, chunkKeys.Count);
        Assert.Equal(chunkKeys.Count, chunkKeys.Distinct().Count());
        Assert.Equal((1L, 0L, 0L), (store.Statistics.Misses, store.Statistics.Rejected, store.Statistics.Unavailable));
    }

    /// <summary>
    /// Issue 28 item 8: writing the genuine entry over a planted manifest deleted every chunk it claimed (1,000,000
    /// keys: 2.0 s, past the operation timeout, a failure counted towards the circuit). Now a manifest over the bound
    /// names nothing, and one within it costs one probe of its chunks (one 1,024-key DEL on Redis, a read of the last
    /// chunk on <c>IDistributedCache</c>), since none of them is there.
    /// </summary>
    [Theory]
    [InlineData("redis", MillionChunks)]
    [InlineData("distributed", MillionChunks)]
    [InlineData("redis", AbsentChunksWithinBound)]
    [InlineData("distributed", AbsentChunksWithinBound)]
    public async Task Writing_over_a_planted_manifest_touches_a_bounded_number_of_its_keys_and_the_entry_reads_back_exact(string kind, string claim)
    {
        var key = CacheTestData.Key("planted-" + claim.Split(' ')[0]);
        var (store, planted) = await Plant(kind, key, claim);
        using var entry = CacheTestData.Entry(key, tokens: 100);
        _sent.Clear();
        await store.PutAsync(key, entry);
        var put = _sent.Commands;
        Assert.Equal((1L, 0L), (store.Statistics.Writes, store.Statistics.FailedWrites));
        using (var back = await store.GetAsync(key)) CacheTestData.AssertSame(entry, back!);
        Assert.Equal((1L, 0L, 0L), (store.Statistics.Hits, store.Statistics.Rejected, store.Statistics.Unavailable));

        // Every command of the write: the new chunks, the index, the manifest swap, and what it asked about the planted write.
        var written = Manifest(store, key);
        var plantedKeys = put.SelectMany(c => c.Keys).Count(k => k.Contains(planted, StringComparison.Ordinal));
        bool withinBound = claim == AbsentChunksWithinBound;
        Assert.Equal(withinBound ? (kind == "redis" ? 1024 : 1) : 0, plantedKeys);
        Assert.DoesNotContain(put, c => c.Command.StartsWith("Remove", StringComparison.Ordinal) && c.Keys.Any(k => k.Contains(planted, StringComparison.Ordinal)));
        Assert.True(put.Count <= written.Chunks + 16, $"{put.Count} commands for an entry of {written.Chunks} chunks");
    }

    [Theory]
    [InlineData("redis", MillionChunks)]
    [InlineData("distributed", MillionChunks)]
    [InlineData("redis", AbsentChunksWithinBound)]
    [InlineData("distributed", AbsentChunksWithinBound)]
    public async Task Removing_a_planted_manifest_deletes_it_and_touches_a_bounded_number_of_its_keys(string kind, string claim)
    {
        var key = CacheTestData.Key("removed-" + claim.Split(' ')[0]);
        var (store, planted) = await Plant(kind, key, claim);
        _sent.Clear();
        // Not an entry of this store when over the bound (so "nothing removed"); within it, the manifest and one probe of its absent chunks.
        bool withinBound = claim == AbsentChunksWithinBound;
        Assert.Equal(withinBound, await store.RemoveAsync(key));
        Assert.False(await store.ContainsAsync(key));
        var plantedKeys = _sent.Commands.SelectMany(c => c.Keys).Count(k => k.Contains(planted, StringComparison.Ordinal));
        Assert.Equal(withinBound ? (kind == "redis" ? 1024 : 1) : 0, plantedKeys);
        Assert.True(_sent.Commands.Count <= 16, $"{_sent.Commands.Count} commands");
    }

    [Theory]
    [InlineData("redis")]
    [InlineData("distributed")]
    public async Task A_genuine_overwrite_deletes_every_chunk_of_the_write_it_replaced(string kind)
    {
        var key = CacheTestData.Key("overwritten");
        IKvCacheStore store = kind == "redis" ? Redis() : Distributed();
        using var first = CacheTestData.Entry(key, tokens: 100, seed: 1);
        using var second = CacheTestData.Entry(key, tokens: 100, seed: 2);
        await store.PutAsync(key, first);
        var old = Manifest(store, key);
        Assert.True(old.Chunks > 1, $"{old.Chunks} chunks");
        await store.PutAsync(key, second);
        using (var back = await store.GetAsync(key)) CacheTestData.AssertSame(second, back!);
        for (int i = 0; i < old.Chunks; i++) Assert.False(await ChunkExists(store, key, old.Write, i), $"chunk {i} of the replaced write is still there");
        Assert.True(await ChunkExists(store, key, Manifest(store, key).Write, 0));
    }

    /// <summary>The manifest the store holds for <paramref name="key"/>, as written (read on the server, not through the store).</summary>
    private ChunkManifest Manifest(IKvCacheStore store, KvCacheKey key) => store is RedisKvCacheStore r
        ? ChunkManifest.Parse(Db.StringGet(r.Manifest(key.Hash)), long.MaxValue, ChunkManifest.MinChunkBytes)!
        : ChunkManifest.Parse(Encoding.ASCII.GetString(garnet.DistributedCache.Get(((DistributedCacheKvCacheStore)store).ManifestKey(key))!), long.MaxValue, ChunkManifest.MinChunkBytes)!;

    private async Task<bool> ChunkExists(IKvCacheStore store, KvCacheKey key, string write, int i) => store is RedisKvCacheStore r
        ? await Db.KeyExistsAsync(r.Chunk(key.Hash, write, i))
        : await garnet.DistributedCache.GetAsync(((DistributedCacheKvCacheStore)store).ChunkKey(key, write, i)) is not null;

    [Theory]
    [InlineData("redis")]
    [InlineData("distributed")]
    public async Task A_chunk_of_another_size_than_the_manifest_says_is_rejected(string kind)
    {
        var key = CacheTestData.Key("resized");
        using var entry = CacheTestData.Entry(key, tokens: 100);
        IKvCacheStore store = kind == "redis" ? Redis() : Distributed();
        await store.PutAsync(key, entry);
        if (store is RedisKvCacheStore r)
        {
            var m = ChunkManifest.Parse(await Db.StringGetAsync(r.Manifest(key.Hash)), long.MaxValue, ChunkManifest.MinChunkBytes)!;
            Assert.True(await Db.KeyExistsAsync(r.Chunk(key.Hash, m.Write, 0)));
            await Db.StringSetAsync(r.Chunk(key.Hash, m.Write, 0), new byte[10]);
        }
        else
        {
            var d = (DistributedCacheKvCacheStore)store;
            var m = ChunkManifest.Parse(Encoding.ASCII.GetString((await garnet.DistributedCache.GetAsync(d.ManifestKey(key)))!), long.MaxValue, ChunkManifest.MinChunkBytes)!;
            Assert.NotNull(await garnet.DistributedCache.GetAsync(d.ChunkKey(key, m.Write, 0)));
            await garnet.DistributedCache.SetAsync(d.ChunkKey(key, m.Write, 0), new byte[10]);
        }
        Assert.Null(await store.GetAsync(key));
        Assert.Equal(1, store.Statistics.Rejected);
    }

    [Fact]
    public async Task An_entry_over_MaxEntryBytes_is_not_written()
    {
        var key = CacheTestData.Key("too-big");
        using var entry = CacheTestData.Entry(key, tokens: 100);
        foreach (IKvCacheStore store in new IKvCacheStore[] { Redis(maxEntryBytes: 4096), Distributed(maxEntryBytes: 4096) })
        {
            await store.PutAsync(key, entry);
            Assert.False(await store.ContainsAsync(key));
            Assert.Equal((0L, 1L, 0L), (store.Statistics.Writes, store.Statistics.Evictions, store.Statistics.FailedWrites));
        }
    }
}
