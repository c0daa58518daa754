using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Garnet;

namespace KVLink.Core.Tests.Cluster;

/// <summary>
/// A Redis Cluster of 3 masters and 3 replicas on 127.0.0.1, started and stopped by the tests: either Debian's
/// redis-server processes (found by <see cref="RedisServerPath"/>) or Microsoft Garnet servers in this process. The
/// cluster is formed with plain commands (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE), so both servers are set up alike.
/// Every redis-server runs under coreutils' timeout, so none outlives a crashed test run by more than 15 minutes.
/// </summary>
public sealed class LocalCluster : IAsyncDisposable
{
    public const int Masters = 3;
    private static readonly TimeSpan FormTimeout = TimeSpan.FromSeconds(90);
    private readonly List<Node> _nodes = [];
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-cluster", Guid.NewGuid().ToString("N"));

    private LocalCluster(string backend) => Backend = backend;

    /// <summary>"redis-server" or "garnet".</summary>
    public string Backend { get; }

    /// <summary>Ports of all six nodes; 0..2 started as masters, 3..5 as their replicas (3 replicates 0, ...).</summary>
    public IReadOnlyList<int> Ports => _nodes.Select(n => n.Port).ToArray();

    /// <summary>A StackExchange.Redis configuration naming every node, with timeouts short enough for failover tests.</summary>
    public string ConnectionString => string.Join(',', _nodes.Select(n => $"127.0.0.1:{n.Port}")) + ",abortConnect=false,connectTimeout=5000,syncTimeout=5000,asyncTimeout=5000";

    /// <summary>redis-server from KVLINK_REDIS_SERVER, else from PATH; null when absent.</summary>
    public static string? RedisServerPath
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable("KVLINK_REDIS_SERVER");
            if (!string.IsNullOrEmpty(configured)) return File.Exists(configured) ? configured : null;
            foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
            {
                if (dir.Length == 0) continue;
                string candidate = Path.Combine(dir, "redis-server");
                if (File.Exists(candidate)) return candidate;
            }
            foreach (var known in new[] { "/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server" })
                if (File.Exists(known)) return known;
            return null;
        }
    }

    public static async Task<LocalCluster> StartAsync(string backend)
    {
        var cluster = new LocalCluster(backend);
        try
        {
            Directory.CreateDirectory(cluster._folder);
            for (int i = 0; i < 2 * Masters; i++) cluster._nodes.Add(backend == "garnet" ? GarnetNode.Start(cluster._folder, i) : RedisNode.Start(cluster._folder, i));
            await cluster.FormAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    private async Task FormAsync()
    {
        foreach (var n in _nodes) await Until(async () => await Ping(n.Port), $"node {n.Port} to answer PING");
        var ids = new string[_nodes.Count];
        for (int i = 0; i < _nodes.Count; i++)
        {
            ids[i] = await Resp.TextAsync(_nodes[i].Port, "CLUSTER", "MYID");
            // Distinct epochs up front (as redis-cli --cluster create does), so no collision has to be resolved.
            try { await Resp.CallAsync(_nodes[i].Port, "CLUSTER", "SET-CONFIG-EPOCH", (i + 1).ToString(CultureInfo.InvariantCulture)); } catch (InvalidOperationException) { }
        }
        for (int m = 0; m < Masters; m++)
        {
            int first = m * HashSlotsPerMaster, last = m == Masters - 1 ? 16383 : (m + 1) * HashSlotsPerMaster - 1;
            await Resp.CallAsync(_nodes[m].Port, "CLUSTER", "ADDSLOTSRANGE", first.ToString(CultureInfo.InvariantCulture), last.ToString(CultureInfo.InvariantCulture));
        }
        // A full mesh of MEETs, repeated while a node does not know every other one: gossip alone (one MEET each, to
        // node 0) left Garnet's nodes strangers for over 90 s on a loaded 2-core machine.
        async Task MeetAll(Node from)
        {
            foreach (var other in _nodes.Where(o => o != from))
            {
                // A MEET that times out on a loaded machine (the whole suite runs in parallel on 2 cores) is not fatal:
                // the loop below waits until every node knows every other one and meets again where one does not.
                try { await Resp.CallAsync(from.Port, [.. other.MeetArgs]); }
                catch (Exception e) when (e is SocketException or IOException or OperationCanceledException) { }
            }
        }
        foreach (var n in _nodes) await MeetAll(n);
        foreach (var n in _nodes)
        {
            int tries = 0;
            await Until(async () =>
            {
                bool known = (await Resp.TextAsync(n.Port, "CLUSTER", "NODES")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Count(l => !l.Contains("handshake", StringComparison.Ordinal) && !l.Contains("noaddr", StringComparison.Ordinal)) == _nodes.Count;
                if (!known && ++tries % 20 == 0) await MeetAll(n); // every ~2 s
                return known;
            }, $"node {n.Port} to know all nodes");
        }
        for (int r = Masters; r < _nodes.Count; r++)
        {
            int replica = r;
            await Until(async () =>
            {
                try { await Resp.CallAsync(_nodes[replica].Port, "CLUSTER", "REPLICATE", ids[replica - Masters]); return true; }
                catch (InvalidOperationException) { return false; } // the replica may not know the master as such yet
            }, $"node {_nodes[r].Port} to accept REPLICATE");
        }
        for (int r = Masters; r < _nodes.Count; r++)
        {
            int port = _nodes[r].Port;
            await Until(async () => (await Resp.TextAsync(port, "INFO", "replication")).Contains("master_link_status:up", StringComparison.Ordinal), $"replica {port} to sync");
        }
        foreach (var n in _nodes) await Until(async () => await ClusterOk(n.Port), $"node {n.Port} to report cluster_state:ok");
    }

    private const int HashSlotsPerMaster = 16384 / Masters;

    /// <summary>The master now serving <paramref name="slot"/> (by CLUSTER SHARDS/NODES of a live node).</summary>
    public async Task<int> MasterPortOfSlotAsync(int slot)
    {
        var live = _nodes.First(n => n.Alive);
        foreach (var line in (await Resp.TextAsync(live.Port, "CLUSTER", "NODES")).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = line.Split(' ');
            if (!f[2].Contains("master", StringComparison.Ordinal) || f[2].Contains("fail", StringComparison.Ordinal)) continue;
            foreach (var range in f.Skip(8))
            {
                var ends = range.Split('-');
                if (!int.TryParse(ends[0], CultureInfo.InvariantCulture, out int a)) continue;
                int b = ends.Length > 1 ? int.Parse(ends[1], CultureInfo.InvariantCulture) : a;
                if (slot >= a && slot <= b) return int.Parse(f[1].Split(':', '@')[1], CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidOperationException($"no live master serves slot {slot}");
    }

    /// <summary>Kills master <paramref name="index"/> (0..2) at once, as a crash would.</summary>
    public void KillMaster(int index) => _nodes[index].Kill();

    /// <summary>
    /// Lets the killed master's replica take over: redis-server promotes it by itself after cluster-node-timeout;
    /// Garnet has no failure detector, so the test plays the operator and sends CLUSTER FAILOVER TAKEOVER to the replica.
    /// Returns when the replica says it is a master and every live node reports cluster_state:ok.
    /// </summary>
    public async Task PromoteReplicaOfAsync(int index)
    {
        var replica = _nodes[index + Masters];
        if (Backend == "garnet") await Resp.CallAsync(replica.Port, "CLUSTER", "FAILOVER", "TAKEOVER");
        await Until(() => IsMaster(replica.Port), $"replica {replica.Port} to be promoted");
        foreach (var n in _nodes.Where(n => n.Alive)) await Until(async () => await ClusterOk(n.Port), $"node {n.Port} to report cluster_state:ok after failover");
    }

    private static async Task<bool> IsMaster(int port) =>
        (await Resp.TextAsync(port, "CLUSTER", "NODES")).Split('\n').Any(l => l.Contains("myself,master", StringComparison.Ordinal));

    private static async Task<bool> ClusterOk(int port) => (await Resp.TextAsync(port, "CLUSTER", "INFO")).Contains("cluster_state:ok", StringComparison.Ordinal);

    private static async Task<bool> Ping(int port)
    {
        try { return await Resp.TextAsync(port, "PING") == "PONG"; }
        catch (Exception e) when (e is SocketException or IOException or InvalidOperationException or OperationCanceledException) { return false; }
    }

    private static async Task Until(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + FormTimeout;
        while (true)
        {
            try { if (await condition()) return; }
            catch (Exception e) when (e is SocketException or IOException or InvalidOperationException or OperationCanceledException) { if (DateTime.UtcNow > deadline) throw new TimeoutException($"gave up waiting for {what}: {e.Message}", e); }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"gave up waiting for {what} after {FormTimeout.TotalSeconds} s");
            await Task.Delay(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var n in _nodes) n.Kill();
        await Task.Yield();
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    internal static (int Port, int BusPort) FreePorts() => KVLink.TestSupport.LoopbackPorts.FreePair();

    private abstract class Node
    {
        public int Port { get; protected init; }
        public bool Alive { get; protected set; } = true;
        public abstract string[] MeetArgs { get; }
        public abstract void Kill();
    }

    private sealed class RedisNode : Node
    {
        private readonly Process _process;
        private readonly int _busPort;

        private RedisNode(Process process, int port, int busPort) { _process = process; Port = port; _busPort = busPort; }

        public override string[] MeetArgs => ["CLUSTER", "MEET", "127.0.0.1", Port.ToString(CultureInfo.InvariantCulture), _busPort.ToString(CultureInfo.InvariantCulture)];

        public static RedisNode Start(string folder, int i)
        {
            string server = RedisServerPath ?? throw new InvalidOperationException("redis-server was not found (set KVLINK_REDIS_SERVER or put it on PATH; .ci/run installs it)");
            var (port, bus) = FreePorts();
            string dir = Path.Combine(folder, "n" + i.ToString(CultureInfo.InvariantCulture));
            Directory.CreateDirectory(dir);
            var start = new ProcessStartInfo("timeout") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = dir };
            foreach (var a in new[]
            {
                "--signal=KILL", "900", server, "--bind", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture),
                "--cluster-enabled", "yes", "--cluster-port", bus.ToString(CultureInfo.InvariantCulture), "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "1500", "--cluster-require-full-coverage", "no", "--cluster-replica-validity-factor", "0",
                "--dir", dir, "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
                "--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru", "--logfile", Path.Combine(dir, "redis.log"),
            }) start.ArgumentList.Add(a);
            var process = Process.Start(start)!;
            process.OutputDataReceived += (_, _) => { };
            process.ErrorDataReceived += (_, _) => { };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return new RedisNode(process, port, bus);
        }

        public override void Kill()
        {
            if (!Alive) return;
            Alive = false;
            try { _process.Kill(entireProcessTree: true); _process.WaitForExit(10_000); } catch (InvalidOperationException) { }
            _process.Dispose();
        }
    }

    private sealed class GarnetNode : Node
    {
        private readonly GarnetServer _server;

        private GarnetNode(GarnetServer server, int port) { _server = server; Port = port; }

        public override string[] MeetArgs => ["CLUSTER", "MEET", "127.0.0.1", Port.ToString(CultureInfo.InvariantCulture)];

        public static GarnetNode Start(string folder, int i)
        {
            var (port, _) = FreePorts();
            string dir = Path.Combine(folder, "g" + i.ToString(CultureInfo.InvariantCulture));
            Directory.CreateDirectory(dir);
            var server = new GarnetServer([
                "--bind", "127.0.0.1", "--port", port.ToString(CultureInfo.InvariantCulture), "--cluster", "--aof",
                "--memory", "256m", "--index", "8m", "--checkpointdir", Path.Combine(dir, "cp"), "--device-type", "RandomAccess",
                "--cluster-timeout", "2", "--gossip-delay", "1",
            ], Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance); // its gossip retries would flood the test log
            server.Start();
            return new GarnetNode(server, port);
        }

        public override void Kill()
        {
            if (!Alive) return;
            Alive = false;
            _server.Dispose();
        }
    }
}
