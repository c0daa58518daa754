using KVLink.Core.Redis;
using System.Globalization;
using Garnet;
using KVLink.Core.Caching;
using KVLink.Core.Tests.Caching;
using Microsoft.Extensions.Caching.StackExchangeRedis;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// A real outage (the in-process Garnet server stopped) seen through a client with StackExchange.Redis's default
/// settings, which queue commands while disconnected: each store call is given up at the store's own timeout, the
/// circuit then skips the server at once, removals throw, and after the break one probe finds the server again.
/// The clock is a <see cref="FakeTimeProvider"/>, so the test waits for nothing.
/// </summary>
public sealed class RemoteStoreCircuitTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2), Break = TimeSpan.FromSeconds(10);
    private readonly int _port = Caching.GarnetFixture.FreePort();
    private readonly FakeTimeProvider _clock = new();
    private GarnetServer? _server;

    private string Endpoint => $"127.0.0.1:{_port.ToString(CultureInfo.InvariantCulture)}";

    public void Dispose() => _server?.Dispose();

    private void StartServer()
    {
        _server = new GarnetServer(["--bind", "127.0.0.1", "--port", _port.ToString(CultureInfo.InvariantCulture), "--memory", "64m", "--index", "4m"]);
        _server.Start();
    }

    private async Task StopServer(Func<bool> connected)
    {
        _server!.Dispose();
        _server = null;
        // Waits for the client's own reconnect thread to notice the server is gone (bounded: 15 s).
        for (int i = 0; i < 300 && connected(); i++) await Task.Delay(50);
        Assert.False(connected(), "the client still reported a connection 15 s after the server stopped");
    }

    private static async Task WaitFor(Func<bool> condition)
    {
        // Waits for another thread (the client's reconnect loop) to reach the state (bounded: 15 s).
        for (int i = 0; i < 300 && !condition(); i++) await Task.Delay(50);
        Assert.True(condition(), "the awaited connection state was not reached within 15 s");
    }

    /// <summary>Runs a call that would wait for the client's own timeout: it is given up when the fake clock passes the store's.</summary>
    private async Task<T> TimedOut<T>(Task<T> call)
    {
        Assert.False(call.IsCompleted, "the client answers at once; this test needs one that waits");
        _clock.Advance(Timeout);
        return await call;
    }

    [Fact]
    public async Task Redis_store_with_a_default_client_gives_up_at_its_timeout_then_skips_the_server_until_a_probe_finds_it()
    {
        StartServer();
        using var connection = await ConnectionMultiplexer.ConnectAsync($"{Endpoint},abortConnect=false");
        var sent = new CommandRecorder();
        var store = new RedisKvCacheStore(sent.Wrap(connection), new() { KeyPrefix = "circuit", OperationTimeout = Timeout, BreakDuration = Break, FailuresBeforeBreak = 2, TimeProvider = _clock });
        var key = CacheTestData.Key("d");
        using var entry = CacheTestData.Entry(key);
        await store.PutAsync(key, entry);

        await StopServer(() => connection.IsConnected);
        Assert.Null(await TimedOut(store.GetAsync(key).AsTask()));
        await TimedOut(store.PutAsync(key, entry).AsTask().ContinueWith(_ => 0, TaskScheduler.Default));

        // Open: a request's 8 reads and 8 writes cost nothing (each is answered at once, and not one command reaches
        // the client, where it would wait for the server), and are counted; a removal says it could not be done.
        Assert.NotEmpty(sent.Commands); // the two calls above did reach the client
        sent.Clear();
        for (int i = 0; i < 8; i++)
        {
            var read = store.GetAsync(key);
            Assert.True(read.IsCompleted, "a read with the circuit open waited");
            Assert.Null(await read);
        }
        for (int i = 0; i < 8; i++)
        {
            var write = store.PutAsync(key, entry);
            Assert.True(write.IsCompleted, "a write with the circuit open waited");
            await write;
        }
        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(async () => await store.RemoveAsync(key));
        Assert.False(await store.ContainsAsync(key));
        output.WriteLine($"commands sent with the circuit open: {sent.Commands.Count}");
        Assert.Empty(sent.Commands);
        var s = store.Statistics;
        Assert.Equal((9L, 9L, 1L), (s.Unavailable, s.FailedWrites, s.Writes));

        // Back, but the break has not passed: still skipped. After it, the probe (a write) goes through and closes the circuit.
        StartServer();
        await WaitFor(() => connection.IsConnected);
        Assert.Null(await store.GetAsync(key));
        Assert.Equal(10, store.Statistics.Unavailable);
        _clock.Advance(Break);
        await store.PutAsync(key, entry);
        Assert.Equal(2, store.Statistics.Writes);
        using var back = await store.GetAsync(key);
        CacheTestData.AssertSame(entry, back!);
        Assert.True(await store.RemoveAsync(key));
    }

    [Fact]
    public async Task Distributed_store_removal_during_an_outage_throws_and_the_entry_is_removed_once_the_cache_is_back()
    {
        StartServer();
        using var cache = new RedisCache(Options.Create(new RedisCacheOptions { Configuration = $"{Endpoint},abortConnect=false", InstanceName = "dc:" }));
        using var store = new DistributedCacheKvCacheStore(cache, new() { KeyPrefix = "circuit", OperationTimeout = Timeout, BreakDuration = Break, FailuresBeforeBreak = 2, TimeProvider = _clock });
        var key = CacheTestData.Key("d");
        using var entry = CacheTestData.Entry(key);
        await store.PutAsync(key, entry);
        using var probe = await ConnectionMultiplexer.ConnectAsync($"{Endpoint},abortConnect=false");

        await StopServer(() => probe.IsConnected);
        // The removal cannot be confirmed: the caller is told, not handed 0.
        var removal = store.RemoveAsync(key).AsTask();
        Assert.False(removal.IsCompleted);
        _clock.Advance(Timeout);
        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(() => removal);
        Assert.Null(await TimedOut(store.GetAsync(key).AsTask()));
        // Open now: everything is answered at once.
        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(async () => await store.RemoveAsync(key));
        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(async () => await store.InvalidateAsync(new KvCacheScope(Tenant: key.Tenant)));
        Assert.Null(await store.GetAsync(key));
        await store.PutAsync(key, entry);
        var s = store.Statistics;
        Assert.Equal((2L, 1L, 1L), (s.Unavailable, s.FailedWrites, s.Writes));

        // The restarted server is empty (Garnet keeps nothing here); put the entry back the way a survivor would see it, then remove it.
        StartServer();
        await WaitFor(() => probe.IsConnected);
        _clock.Advance(Break);
        await store.PutAsync(key, entry);
        Assert.True(await store.RemoveAsync(key));
        Assert.Null(await store.GetAsync(key));
    }

    [Fact]
    public async Task With_every_default_one_request_during_an_outage_costs_a_few_timeouts_not_one_per_call()
    {
        // Default store options and a default client (only the clock is a fake one): 8 reads and 8 writes, as one request of 8 documents.
        StartServer();
        using var connection = await ConnectionMultiplexer.ConnectAsync($"{Endpoint},abortConnect=false");
        var sent = new CommandRecorder();
        var defaults = new RedisKvCacheStoreOptions();
        var store = new RedisKvCacheStore(sent.Wrap(connection), new() { KeyPrefix = "defaults", TimeProvider = _clock });
        var key = CacheTestData.Key("d");
        using var entry = CacheTestData.Entry(key);
        await StopServer(() => connection.IsConnected);

        // A call that reaches the client waits (the server is gone) until the store's timeout passes on the clock; one
        // the circuit skips is answered at once and sends nothing.
        int waited = 0, reachedClient = 0;
        async Task Call(Func<Task> call)
        {
            int before = sent.Commands.Count;
            var task = call();
            if (sent.Commands.Count > before) reachedClient++;
            if (!task.IsCompleted) { waited++; _clock.Advance(defaults.OperationTimeout); }
            await task;
        }
        for (int i = 0; i < 8; i++)
        {
            await Call(async () => Assert.Null(await store.GetAsync(key)));
            await Call(async () => await store.PutAsync(key, entry));
        }
        output.WriteLine($"8 reads + 8 writes, server down, default settings: {waited} waited for the timeout, {reachedClient} reached the client");
        // FailuresBeforeBreak calls wait the OperationTimeout each; the rest are skipped.
        Assert.Equal(defaults.FailuresBeforeBreak, waited);
        Assert.Equal(defaults.FailuresBeforeBreak, reachedClient);
        Assert.Equal((8L, 8L), (store.Statistics.Unavailable, store.Statistics.FailedWrites));
    }
}
