using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace KVLink.Benchmarks;

/// <summary>
/// Debian's redis-server on 127.0.0.1 for the store rows: one node alone, or 3 masters formed into a Redis Cluster
/// the way tests/KVLink.Core.Tests/Cluster/LocalCluster.cs forms one (CLUSTER SET-CONFIG-EPOCH, ADDSLOTSRANGE, MEET),
/// without the replicas (a read touches only masters; replicas would only add replication work to the shared CPUs).
/// Every node runs under coreutils' timeout, so none outlives a crashed benchmark by more than an hour; Dispose kills them.
/// </summary>
internal sealed class BenchRedis : IDisposable
{
    public const int Masters = 3;
    private readonly List<(Process Process, int Port, int Bus)> _nodes = [];
    private readonly string _folder;

    private BenchRedis(string folder) => _folder = folder;

    /// <summary>A StackExchange.Redis configuration naming every node, with timeouts long enough for 100+ MiB entries on a shared machine.</summary>
    public string ConnectionString => string.Join(',', _nodes.Select(n => $"127.0.0.1:{n.Port}")) + ",abortConnect=false,connectTimeout=10000,syncTimeout=60000,asyncTimeout=60000";

    /// <summary>redis-server from KVLINK_REDIS_SERVER, PATH or /usr/bin; null when absent.</summary>
    public static string? ServerPath
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable("KVLINK_REDIS_SERVER");
            if (!string.IsNullOrEmpty(configured)) return File.Exists(configured) ? configured : null;
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Append("/usr/bin").Append("/usr/local/bin"))
                if (dir.Length > 0 && File.Exists(Path.Combine(dir, "redis-server"))) return Path.Combine(dir, "redis-server");
            return null;
        }
    }

    /// <summary>Starts one node (<paramref name="cluster"/> false) or a 3-master cluster, and waits until it serves.</summary>
    public static async Task<BenchRedis> StartAsync(string folder, bool cluster)
    {
        var r = new BenchRedis(folder);
        try
        {
            string server = ServerPath ?? throw new InvalidOperationException("redis-server was not found (set KVLINK_REDIS_SERVER, or run .ci/redis-server.sh)");
            Directory.CreateDirectory(folder);
            for (int i = 0; i < (cluster ? Masters : 1); i++) r._nodes.Add(StartNode(server, folder, i, cluster));
            foreach (var n in r._nodes) await Until(async () => await TextAsync(n.Port, "PING") == "PONG", $"redis-server {n.Port} to answer PING");
            if (cluster) await r.FormAsync();
            return r;
        }
        catch
        {
            r.Dispose();
            throw;
        }
    }

    private static (Process, int, int) StartNode(string server, string folder, int i, bool cluster)
    {
        var (port, bus) = FreePorts();
        string dir = Path.Combine(folder, "n" + i.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var start = new ProcessStartInfo("timeout") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir };
        var args = new List<string>
        {
            "--signal=KILL", "3600", server, "--bind", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture),
            "--dir", dir, "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
            "--maxmemory", "2gb", "--maxmemory-policy", "allkeys-lru", "--logfile", Path.Combine(dir, "redis.log"),
        };
        if (cluster)
            args.AddRange(["--cluster-enabled", "yes", "--cluster-port", bus.ToString(CultureInfo.InvariantCulture), "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--cluster-require-full-coverage", "no"]);
        foreach (var a in args) start.ArgumentList.Add(a);
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, port, bus);
    }

    private async Task FormAsync()
    {
        const int perMaster = 16384 / Masters;
        for (int m = 0; m < _nodes.Count; m++)
        {
            await CallAsync(_nodes[m].Port, "CLUSTER", "SET-CONFIG-EPOCH", (m + 1).ToString(CultureInfo.InvariantCulture));
            int first = m * perMaster, last = m == Masters - 1 ? 16383 : (m + 1) * perMaster - 1;
            await CallAsync(_nodes[m].Port, "CLUSTER", "ADDSLOTSRANGE", first.ToString(CultureInfo.InvariantCulture), last.ToString(CultureInfo.InvariantCulture));
        }
        for (int i = 1; i < _nodes.Count; i++)
            await CallAsync(_nodes[i].Port, "CLUSTER", "MEET", "127.0.0.1", _nodes[0].Port.ToString(CultureInfo.InvariantCulture), _nodes[0].Bus.ToString(CultureInfo.InvariantCulture));
        foreach (var n in _nodes)
            await Until(async () => (await TextAsync(n.Port, "CLUSTER", "INFO")).Contains("cluster_state:ok", StringComparison.Ordinal)
                && (await TextAsync(n.Port, "CLUSTER", "NODES")).Split('\n', StringSplitOptions.RemoveEmptyEntries).Count(l => !l.Contains("handshake", StringComparison.Ordinal) && !l.Contains("noaddr", StringComparison.Ordinal)) == Masters,
                $"redis-server {n.Port} to report cluster_state:ok with {Masters} masters");
    }

    public void Dispose()
    {
        foreach (var (process, _, _) in _nodes)
        {
            try { process.Kill(entireProcessTree: true); process.WaitForExit(10_000); } catch (InvalidOperationException) { }
            process.Dispose();
        }
        _nodes.Clear();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static (int Port, int BusPort) FreePorts() => KVLink.TestSupport.LoopbackPorts.FreePair();

    private static async Task Until(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            try { if (await condition()) return; }
            catch (Exception e) when (e is SocketException or IOException or InvalidOperationException or OperationCanceledException)
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"gave up waiting for {what}: {e.Message}", e);
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"gave up waiting for {what}");
            await Task.Delay(100);
        }
    }

    private static async Task<string> TextAsync(int port, params string[] args) => await CallAsync(port, args);

    /// <summary>One RESP2 command on its own connection (administration only); replies are read as text, errors thrown.</summary>
    private static async Task<string> CallAsync(int port, params string[] args)
    {
        using var client = new TcpClient();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await client.ConnectAsync(IPAddress.Loopback, port, cts.Token);
        var stream = client.GetStream();
        var request = new StringBuilder().Append('*').Append(args.Length).Append("\r\n");
        foreach (var a in args) request.Append('$').Append(Encoding.UTF8.GetByteCount(a)).Append("\r\n").Append(a).Append("\r\n");
        await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()), cts.Token);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string line = await reader.ReadLineAsync(cts.Token) ?? throw new IOException("connection closed");
        switch (line[0])
        {
            case '+': return line[1..];
            case '-': throw new InvalidOperationException("server error: " + line[1..]);
            case ':': return line[1..];
            case '$':
                int n = int.Parse(line[1..], CultureInfo.InvariantCulture);
                if (n < 0) return "";
                var buffer = new char[n];
                int read = 0;
                while (read < n) { int got = await reader.ReadAsync(buffer.AsMemory(read, n - read), cts.Token); if (got == 0) throw new IOException("connection closed"); read += got; }
                return new string(buffer);
            default: throw new InvalidOperationException("unexpected reply: " + line);
        }
    }
}
