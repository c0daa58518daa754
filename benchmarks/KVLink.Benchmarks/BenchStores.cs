using KVLink.Core.Redis;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Garnet;
using KVLink.Core.Caching;
using StackExchange.Redis;

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

    public void Dispose()
    {
        _redis?.Dispose();
        _garnet?.Dispose();
    }

    [DllImport("libc", EntryPoint = "posix_fadvise")]
    private static extern int PosixFadvise(int fd, long offset, long length, int advice);
}
