using KVLink.TestSupport;
using KVLink.Core.Redis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Garnet;
using Microsoft.Extensions.Time.Testing;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Tests.Engine;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// The Redis-protocol server (Garnet, in process, loopback) stopped and restarted in the middle of a run:
/// requests fall back to the tiers above it or to recomputing, the answers stay those of a fresh engine,
/// removals report the outage, and the store is used again once the server is back.
/// </summary>
public sealed class StoreOutageTests(CheckpointFixture fx, ITestOutputHelper output) : IClassFixture<CheckpointFixture>, IDisposable
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 6, StopTokenIds = [] };
    private readonly TempFolder _dir = new();
    private readonly int _port = Caching.GarnetFixture.FreePort();
    private GarnetServer? _server;

    public void Dispose()
    {
        _server?.Dispose();
        _dir.Dispose();
    }

    private void StartServer()
    {
        _server = new GarnetServer(["--bind", "127.0.0.1", "--port", _port.ToString(CultureInfo.InvariantCulture), "--memory", "64m", "--index", "4m"]);
        _server.Start();
    }

    private void StopServer()
    {
        _server!.Dispose();
        _server = null;
    }

    private KvLinkEngine Engine(IKvCacheStore store) =>
        new(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32 }, store);

    private static async Task WaitConnected(IConnectionMultiplexer connection, bool connected)
    {
        // Waits for the client's reconnect thread (bounded: 30 s).
        for (int i = 0; i < 300 && connection.IsConnected != connected; i++) await Task.Delay(100);
        Assert.True(connected == connection.IsConnected, $"the connection did not become {(connected ? "connected" : "disconnected")} within 30 s");
    }

    [Fact]
    public async Task Server_stopped_and_restarted_mid_run_falls_back_serves_nothing_wrong_and_recovers()
    {
        var docs = Enumerable.Range(0, 3).Select(i => CheckpointFixture.Doc(200 + i, 8 + i)).ToList();
        const string query = "Which word comes first?";
        IReadOnlyList<int> reference;
        await using (var fresh = Engine(new MemoryKvCacheStore()))
        {
            var ids0 = new List<string>();
            foreach (var d in docs) ids0.Add(await fresh.PrecomputeAsync(d));
            reference = (await fresh.GenerateAsync(query, ids0, Greedy)).TokenIds;
        }

        StartServer();
        // FailFast: while the server is down a command fails at once instead of waiting in the backlog for the timeout.
        var config = ConfigurationOptions.Parse($"127.0.0.1:{_port},abortConnect=false,connectTimeout=2000,syncTimeout=5000,asyncTimeout=5000,connectRetry=1");
        config.BacklogPolicy = BacklogPolicy.FailFast;
        config.ReconnectRetryPolicy = new LinearRetry(250);
        using var connection = await ConnectionMultiplexer.ConnectAsync(config);
        // The store's circuit opens during the outage; a fake clock lets the test pass its break instead of waiting 10 s.
        var clock = new FakeTimeProvider();
        var redis = new RedisKvCacheStore(connection, new() { KeyPrefix = "outage", TimeProvider = clock });
        var file = new FileKvCacheStore(_dir.File("file"));
        var memory = new MemoryKvCacheStore();
        var tiered = new TieredKvCacheStore(memory, file, redis);

        await using var engine = Engine(tiered);
        var ids = new List<string>();
        foreach (var d in docs) ids.Add(await engine.PrecomputeAsync(d));
        Assert.Equal(reference, (await engine.GenerateAsync(query, ids, Greedy)).TokenIds);
        Assert.True(redis.Statistics.Writes >= 3, "slot-0 caches and the other slots encoded on demand reach the server");

        // Server down. A Redis-only engine recomputes; a tiered one reads the tiers above; nobody sees an exception.
        StopServer();
        await WaitConnected(connection, false);
        await using (var redisOnly = Engine(redis))
        {
            var ids2 = new List<string>();
            foreach (var d in docs) ids2.Add(await redisOnly.PrecomputeAsync(d)); // reads miss, writes fail: both counted
            var r = await redisOnly.GenerateAsync(query, ids2, Greedy);
            Assert.Equal(reference, r.TokenIds);
        }
        Assert.True(redis.Statistics.Unavailable >= 3, $"unavailable reads: {redis.Statistics.Unavailable}");
        Assert.True(redis.Statistics.FailedWrites >= 3, $"failed writes: {redis.Statistics.FailedWrites}");

        memory.Dispose(); // force the read down to the file tier
        await using (var second = Engine(tiered))
        {
            long fileHits = file.Statistics.Hits;
            var r = await second.GenerateAsync(query, ids, Greedy);
            Assert.Equal(reference, r.TokenIds);
            Assert.True(file.Statistics.Hits > fileHits, "the file tier served the documents while the server was down");
            Assert.True(r.Usage.CachedTokens > 0);
        }
        Assert.False(await tiered.ContainsAsync(engine.CacheKey("no-such-document", 0)));

        // A removal cannot be confirmed on the server: the reachable tiers remove, then the caller is told.
        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(() => engine.RemoveDocumentAsync(ids[2]));
        Assert.False(await file.ContainsAsync(engine.CacheKey(ids[2], 0)));

        // Server back (empty: Garnet here keeps nothing on disk). Writes and reads go to it again.
        StartServer();
        await WaitConnected(connection, true);
        clock.Advance(new RedisKvCacheStoreOptions().BreakDuration);
        long writesBefore = redis.Statistics.Writes;
        await using (var third = Engine(redis))
        {
            var ids3 = new List<string>();
            foreach (var d in docs) ids3.Add(await third.PrecomputeAsync(d));
            Assert.Equal(reference, (await third.GenerateAsync(query, ids3, Greedy)).TokenIds);
        }
        Assert.True(redis.Statistics.Writes >= writesBefore + 3, "writes reach the server again");
        await using (var fourth = Engine(redis))
        {
            long hits = redis.Statistics.Hits;
            var r = await fourth.GenerateAsync(query, ids, Greedy);
            Assert.Equal(reference, r.TokenIds);
            Assert.True(redis.Statistics.Hits >= hits + 1, "the restarted server serves hits");
        }
        Assert.Equal(0, redis.Statistics.Rejected);
        Assert.True(await engine.RemoveDocumentAsync(ids[2]) >= 1, "removal reaches the server again");
        var s = redis.Statistics;
        output.WriteLine($"redis tier over the outage: hits {s.Hits}, misses {s.Misses} (unavailable {s.Unavailable}), writes {s.Writes}, failed writes {s.FailedWrites}");
    }

    [Fact]
    public void Invalid_store_options_fail_with_the_option_named()
    {
        void Check(Action create, string option)
        {
            var e = Assert.ThrowsAny<ArgumentException>(create);
            Assert.Contains(option, e.Message, StringComparison.Ordinal);
        }
        Check(() => new MemoryKvCacheStore(new() { ByteBudget = -1 }), "MemoryKvCacheStoreOptions.ByteBudget");
        Check(() => new MemoryKvCacheStore(new() { Policy = (MemoryKvCacheStoreOptions.EvictionPolicy)42 }), "MemoryKvCacheStoreOptions.Policy");
        string dir = _dir.File("opts");
        Check(() => new FileKvCacheStore(dir, new() { ByteBudget = -5 }), "FileKvCacheStoreOptions.ByteBudget");
        Check(() => new FileKvCacheStore(dir, new() { StaleTempFileAge = TimeSpan.FromSeconds(-1) }), "FileKvCacheStoreOptions.StaleTempFileAge");
        Check(() => new FileKvCacheStore(dir, new() { Quantization = (KvCacheQuantization)9 }), "FileKvCacheStoreOptions.Quantization");
        Check(() => new FileKvCacheStore(" "), "directory");
        var offline = ConfigurationOptions.Parse($"127.0.0.1:{_port},abortConnect=false,connectTimeout=200");
        using var connection = ConnectionMultiplexer.Connect(offline);
        Check(() => new RedisKvCacheStore(connection, new() { ChunkBytes = 0 }), "RedisKvCacheStoreOptions.ChunkBytes");
        Check(() => new RedisKvCacheStore(connection, new() { TimeToLive = TimeSpan.Zero }), "RedisKvCacheStoreOptions.TimeToLive");
        Check(() => new RedisKvCacheStore(connection, new() { KeyPrefix = "" }), "RedisKvCacheStoreOptions.KeyPrefix");
        Check(() => new RedisKvCacheStore(connection, new() { Database = -2 }), "RedisKvCacheStoreOptions.Database");
        Check(() => new RedisKvCacheStore(connection, new() { Quantization = (KvCacheQuantization)7 }), "RedisKvCacheStoreOptions.Quantization");
        Check(() => new RedisKvCacheStore(connection, new() { KeyPrefix = "a{b}" }), "RedisKvCacheStoreOptions.KeyPrefix");
        Check(() => new RedisKvCacheStore(connection, new() { MaxEntryBytes = 100 }), "RedisKvCacheStoreOptions.MaxEntryBytes");
        Check(() => new RedisKvCacheStore(connection, new() { OperationTimeout = TimeSpan.Zero }), "RedisKvCacheStoreOptions.OperationTimeout");
        Check(() => new RedisKvCacheStore(connection, new() { FailuresBeforeBreak = -1 }), "RedisKvCacheStoreOptions.FailuresBeforeBreak");
        Check(() => new RedisKvCacheStore(connection, new() { BreakDuration = TimeSpan.FromSeconds(-1) }), "RedisKvCacheStoreOptions.BreakDuration");
        using var cache = new Microsoft.Extensions.Caching.StackExchangeRedis.RedisCache(Microsoft.Extensions.Options.Options.Create(new Microsoft.Extensions.Caching.StackExchangeRedis.RedisCacheOptions { Configuration = offline.ToString() }));
        Check(() => new DistributedCacheKvCacheStore(cache, new() { MaxEntryBytes = long.MaxValue }), "ChunkedKvCacheStoreOptions.MaxEntryBytes");
        Check(() => new DistributedCacheKvCacheStore(cache, new() { OperationTimeout = TimeSpan.FromSeconds(-3) }), "ChunkedKvCacheStoreOptions.OperationTimeout");
        Check(() => _ = new TieredKvCacheStore(), "tiers");
        Check(() => new KvLinkOptions { Tenant = " " }.Validate(), "Tenant");
        Check(() => new KvLinkOptions { PrecomputeSlots = 0 }.Validate(), "PrecomputeSlots");
        Check(() => new KvLinkOptions { MaxRunningSequences = 0 }.Validate(), "MaxRunningSequences");
        Check(() => new KvLinkOptions { MaxLiveCacheBytes = -1 }.Validate(), "MaxLiveCacheBytes");
        Check(() => new KvLinkOptions { MaxStepTokens = 0 }.Validate(), "MaxStepTokens");
        Check(() => new KvLinkOptions { PrecomputeMaxWait = TimeSpan.FromSeconds(-1) }.Validate(), "PrecomputeMaxWait");
        Check(() => new KvLinkOptions { LinkTokens = -1 }.Validate(), "LinkTokens");
    }
}
