using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.TestSupport;
using StackExchange.Redis;

namespace KVLink.Core.Tests.Cluster;

/// <summary>
/// Two engine processes (tests/KVLink.Core.EngineProcess, separate OS processes) sharing one cache on the cluster:
/// a document precomputed by one is served from the cache by the other, concurrent precomputes of one document leave
/// one consistent entry (a manifest and exactly its chunks), and a removal by one is seen by the other.
/// </summary>
public abstract class ClusterEngineProcessTests(ClusterFixture fixture) : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-engine-processes", Guid.NewGuid().ToString("N"));

    protected async Task Two_engine_processes_share_the_cluster_cache()
    {
        string checkpoint = Path.Combine(_folder, "ckpt");
        SyntheticCheckpoint.Write(checkpoint, SyntheticCheckpoint.SmallConfig(hidden: 64, layers: 2, heads: 4, kvHeads: 2, maxPositions: 2048), seed: 11);
        string prefix = "p" + Guid.NewGuid().ToString("N")[..12];
        await using var a = await EngineProcess.StartAsync(checkpoint, fixture.Cluster.ConnectionString, prefix);
        await using var b = await EngineProcess.StartAsync(checkpoint, fixture.Cluster.ConnectionString, prefix);

        // Precomputed by A, served from the cache by B (which never saw the document), with A's answer.
        var (id, _) = Precomputed(await a.Call("precompute 1 40"));
        var fromA = Generated(await a.Call($"generate {id}"));
        var fromB = Generated(await b.Call($"generate {id}"));
        Assert.True(fromB.Cached > 0, "B should reuse A's cached document");
        Assert.Equal(fromA.Tokens, fromB.Tokens);

        // Both precompute one new document at once: one manifest, and exactly the chunks it names.
        var both = await Task.WhenAll(a.Call("precompute 2 60"), b.Call("precompute 2 60"));
        var (id2, hash2) = Precomputed(both[0]);
        Assert.Equal(both[0], both[1]);
        var db = fixture.Connection.GetDatabase();
        var manifest = ChunkManifest.Parse(await db.StringGetAsync($"{prefix}:v3:{{{hash2}}}:m"), long.MaxValue, ChunkManifest.MinChunkBytes);
        Assert.NotNull(manifest);
        int port = await fixture.Cluster.MasterPortOfSlotAsync(Redis.HashSlots.Of(hash2));
        var server = fixture.Connection.GetServer("127.0.0.1", port);
        var chunkKeys = new List<string>();
        await foreach (var k in server.KeysAsync(pattern: $"{prefix}:v3:{{{hash2}}}:c:*")) chunkKeys.Add(k!);
        Assert.Equal(manifest!.Chunks, chunkKeys.Count);
        Assert.All(chunkKeys, k => Assert.Contains($":c:{manifest.Write}:", k, StringComparison.Ordinal));
        Assert.Equal(Generated(await a.Call($"generate {id2}")).Tokens, Generated(await b.Call($"generate {id2}")).Tokens);

        // A removes the first document; B sees it gone from the cache.
        Assert.Equal("ok true", await b.Call($"contains {id}"));
        Assert.Equal("ok 1", await a.Call($"remove {id}"));
        Assert.Equal("ok false", await b.Call($"contains {id}"));
        string after = await b.Call($"generate {id}");
        // B still knows the document's text, so it may recompute it; the answer stays the same either way.
        Assert.True(after.StartsWith("error KeyNotFoundException", StringComparison.Ordinal) || Generated(after).Tokens == fromA.Tokens, after);
    }

    private static (string Id, string Hash) Precomputed(string reply)
    {
        var p = reply.Split(' ');
        Assert.True(p.Length == 3 && p[0] == "ok", reply);
        return (p[1], p[2]);
    }

    private static (int Cached, string Tokens) Generated(string reply)
    {
        var p = reply.Split(' ');
        Assert.True(p.Length >= 2 && p[0] == "ok", reply);
        return (int.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture), p.Length > 2 ? p[2] : "");
    }

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    /// <summary>One engine process; every reply is awaited for at most two minutes.</summary>
    private sealed class EngineProcess : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly SemaphoreSlim _gate = new(1, 1);

        private EngineProcess(Process process) => _process = process;

        public static async Task<EngineProcess> StartAsync(string checkpoint, string configuration, string prefix)
        {
            string helper = Path.Combine(AppContext.BaseDirectory, "KVLink.Core.EngineProcess.dll");
            var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var arg in new[] { helper, checkpoint, configuration, prefix, "tenant-p" }) start.ArgumentList.Add(arg);
            var child = new EngineProcess(Process.Start(start)!);
            Assert.Equal("READY", await child.ReadLine());
            return child;
        }

        public async Task<string> Call(string command)
        {
            await _gate.WaitAsync();
            try
            {
                await _process.StandardInput.WriteLineAsync(command);
                await _process.StandardInput.FlushAsync();
                return await ReadLine();
            }
            finally { _gate.Release(); }
        }

        private async Task<string> ReadLine()
        {
            var line = _process.StandardOutput.ReadLineAsync();
            Assert.True(await Task.WhenAny(line, Task.Delay(TimeSpan.FromMinutes(2))) == line, "the engine process did not answer");
            return await line ?? throw new InvalidOperationException("the engine process ended");
        }

        public async ValueTask DisposeAsync()
        {
            try { await _process.StandardInput.WriteLineAsync("quit"); await _process.StandardInput.FlushAsync(); } catch (IOException) { }
            if (!_process.WaitForExit(10_000)) _process.Kill(entireProcessTree: true);
            _process.Dispose();
            _gate.Dispose();
        }
    }
}

[Collection(RedisServerClusterCollection.Name)]
public sealed class RedisServerClusterEngineProcessTests(RedisServerClusterFixture fixture) : ClusterEngineProcessTests(fixture)
{
    [RedisServerFact] public Task Two_engine_processes_share_one_cache() => Two_engine_processes_share_the_cluster_cache();
}

[Collection(GarnetClusterCollection.Name)]
public sealed class GarnetClusterEngineProcessTests(GarnetClusterFixture fixture) : ClusterEngineProcessTests(fixture)
{
    [Fact] public Task Two_engine_processes_share_one_cache() => Two_engine_processes_share_the_cluster_cache();
}
