using KVLink.Core.Redis;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Garnet;
using KVLink.Core.Caching;
using StackExchange.Redis;
using KVLink.Core.Model;
using System.Diagnostics;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>Folders and a Garnet server for the stores under test; disposed after a model's tables.</summary>
internal sealed class BenchStores(string folder) : IDisposable
{
    private GarnetServer? _garnet;
    private ConnectionMultiplexer? _redis;

    public IKvCacheStore File(string name, KvCacheQuantization compression = KvCacheQuantization.None)
    {
        string dir = Path.Combine(folder, name + "-" + Guid.NewGuid().ToString("N")[..8]);
        var store = new FileKvCacheStore(dir, new FileKvCacheStoreOptions { Quantization = compression });
        _folders[name] = dir;
        return store;
    }

    private readonly Dictionary<string, string> _folders = [];

    /// <summary>Evicts every entry file of a store from the OS page cache (no root needed), so the next read comes from disk.</summary>
    public void DropPageCache(string name)
    {
        if (!_folders.TryGetValue(name, out var dir)) return;
        foreach (var path in Directory.EnumerateFiles(dir)) Evict(path);
    }

    /// <summary>Evicts one file's clean pages from the OS page cache.</summary>
    public static void Evict(string path)
    {
        using var handle = System.IO.File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        if (OperatingSystem.IsLinux()) _ = PosixFadvise(handle.DangerousGetHandle().ToInt32(), 0, 0, 4 /* POSIX_FADV_DONTNEED */);
    }

    public IKvCacheStore Redis()
    {
        if (_garnet is null)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            int port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            _garnet = new GarnetServer(["--bind", "127.0.0.1", "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--memory", "4g", "--index", "64m"]);
            _garnet.Start();
            _redis = ConnectionMultiplexer.Connect($"127.0.0.1:{port},abortConnect=false,syncTimeout=60000,asyncTimeout=60000");
        }
        return new RedisKvCacheStore(_redis!, new RedisKvCacheStoreOptions { KeyPrefix = "bench-" + Guid.NewGuid().ToString("N")[..8] });
    }

    private BenchRedis? _single, _cluster;
    private ConnectionMultiplexer? _singleConnection, _clusterConnection;

    /// <summary>
    /// A Redis store on Debian's redis-server on loopback: one node, or a 3-master Redis Cluster (the connection names
    /// every master; StackExchange.Redis follows the slots). Started on first use, stopped by <see cref="Dispose"/>.
    /// </summary>
    public RedisKvCacheStore RedisServer(bool cluster)
    {
        ref var server = ref cluster ? ref _cluster : ref _single;
        ref var connection = ref cluster ? ref _clusterConnection : ref _singleConnection;
        if (server is null)
        {
            server = BenchRedis.StartAsync(Path.Combine(folder, cluster ? "redis-cluster" : "redis-single"), cluster).GetAwaiter().GetResult();
            connection = ConnectionMultiplexer.Connect(server.ConnectionString);
        }
        // Timeouts for 100+ MiB entries on a shared 2-core machine: a timed-out read would be a silent miss (recompute).
        return new RedisKvCacheStore(connection!, new RedisKvCacheStoreOptions { KeyPrefix = "bench-" + Guid.NewGuid().ToString("N")[..8], OperationTimeout = TimeSpan.FromSeconds(60) });
    }

    /// <summary>
    /// Read bandwidth of one <paramref name="tokens"/>-token entry of <paramref name="config"/>'s shape (bf16, random
    /// values) from a redis-server store: serialized bytes of the entry / wall time of one GetAsync, after one warm-up read.
    /// </summary>
    public async Task<StoreRead> ReadBandwidthAsync(string name, bool cluster, LlamaConfig config, int tokens, int runs)
    {
        var store = RedisServer(cluster);
        long[] shape = [config.NumHiddenLayers, config.NumKeyValueHeads, tokens, config.HeadDim];
        using var entry = new DocumentKvCache($"bandwidth-{tokens}", 0, Enumerable.Range(0, tokens).Select(i => 256 + i % 1000).ToArray(),
            randn(shape, ScalarType.BFloat16), randn(shape, ScalarType.BFloat16), "bench-bandwidth-model", "bench-bandwidth-format", null, "bandwidth probe");
        var read = new StoreRead(name, tokens, KvCacheFormat.Serialize(entry).Length);
        await store.PutAsync(entry.Key, entry);
        if (store.Statistics.FailedWrites > 0) throw new InvalidOperationException($"{name}: the {tokens}-token entry was not written");
        for (int r = -1; r < runs; r++)
        {
            var clock = Stopwatch.StartNew();
            using var got = await store.GetAsync(entry.Key) ?? throw new InvalidOperationException($"{name}: the {tokens}-token entry was not read back");
            double ms = clock.Elapsed.TotalMilliseconds;
            if (got.Length != tokens) throw new InvalidOperationException($"{name}: read {got.Length} tokens, wrote {tokens}");
            if (r >= 0) read.Ms.Add(ms);
        }
        await store.RemoveAsync(entry.Key);
        return read;
    }

    public void Dispose()
    {
        _redis?.Dispose();
        _garnet?.Dispose();
        _singleConnection?.Dispose();
        _clusterConnection?.Dispose();
        _single?.Dispose();
        _cluster?.Dispose();
    }

    [DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int PosixFadvise(int fd, long offset, long length, int advice);
}

/// <summary>Timed reads of one entry from a store: its serialized size and the wall time of each GetAsync.</summary>
internal sealed record StoreRead(string Store, int Tokens, long Bytes)
{
    public List<double> Ms { get; } = [];
    public double MedianMs => Stats.Median(Ms);
    public double BytesPerSecond => Bytes / (MedianMs / 1000);
}
