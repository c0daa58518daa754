using KVLink.TestSupport;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Tests.Engine;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// Requests cancelled at every stage — before queueing, while precomputing, while loading caches from the
/// store, during prefill and during decoding — leave the engine and its file store consistent: only whole,
/// valid entries on disk, no temp files, and later identical requests answer exactly as a fresh engine does.
/// </summary>
public sealed class CancellationConsistencyTests(CheckpointFixture fx, ITestOutputHelper output) : IClassFixture<CheckpointFixture>, IDisposable
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 8, StopTokenIds = [] };
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A real store that cancels a request at a chosen point: its n-th read, or its first write.</summary>
    private sealed class CancelAtStore(IKvCacheStore inner) : IKvCacheStore
    {
        private int _reads;
        public CancellationTokenSource? Source { get; set; }
        public int CancelOnRead { get; set; } = -1;
        public bool CancelOnWrite { get; set; }
        public void Reset() => _reads = 0;

        public ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
        {
            if (Interlocked.Increment(ref _reads) == CancelOnRead) Source?.Cancel();
            return inner.GetAsync(key, cancellationToken);
        }

        public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
        {
            if (CancelOnWrite) Source?.Cancel();
            await inner.PutAsync(key, entry, cancellationToken);
        }

        public ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default) => inner.RemoveAsync(key, cancellationToken);
        public ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default) => inner.ContainsAsync(key, cancellationToken);
        public ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default) => inner.InvalidateAsync(scope, cancellationToken);
        public KvCacheStoreStatistics Statistics => inner.Statistics;
    }

    private KvLinkEngine Engine(IKvCacheStore store) =>
        new(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32 }, store);

    [Fact]
    public async Task Cancellation_at_every_stage_leaves_engine_and_store_consistent()
    {
        var docs = Enumerable.Range(0, 3).Select(i => CheckpointFixture.Doc(400 + i, 14 + 6 * i)).ToList();
        const string query = "Which of the words comes first?";
        IReadOnlyList<int> reference;
        await using (var fresh = Engine(new MemoryKvCacheStore()))
        {
            var rid = new List<string>();
            foreach (var d in docs) rid.Add(await fresh.PrecomputeAsync(d));
            reference = (await fresh.GenerateAsync(query, rid, Greedy)).TokenIds;
        }

        var file = new FileKvCacheStore(_dir.File("store"));
        var store = new CancelAtStore(file);
        await using var engine = Engine(store);
        var ids = docs.Select(engine.DocumentId).ToList();
        int cancelled = 0, completed = 0;

        async Task Attempt(Func<CancellationTokenSource> arm, bool precomputeFirst)
        {
            foreach (var id in ids) await engine.RemoveDocumentAsync(id); // caches must be computed again
            store.Reset();
            using var cts = arm();
            store.Source = cts;
            try
            {
                if (precomputeFirst) foreach (var d in docs) await engine.PrecomputeAsync(d, cts.Token);
                else foreach (var d in docs) await engine.PrecomputeAsync(d);
                var r = await engine.GenerateAsync(query, ids, Greedy, cts.Token);
                Assert.Equal(reference, r.TokenIds); // a request that was not cancelled is exact
                completed++;
            }
            catch (OperationCanceledException) { cancelled++; }
            finally
            {
                store.Source = null;
                store.CancelOnRead = -1;
                store.CancelOnWrite = false;
            }
            // An encode shared with a cancelled caller still finishes and stores its entry: wait (bounded) for quiet.
            for (int i = 0; i < 200 && (engine.QueueLength > 0 || Directory.GetFiles(file.Directory, "*.tmp").Length > 0); i++) await Task.Delay(25);
            Assert.True(engine.QueueLength == 0 && Directory.GetFiles(file.Directory, "*.tmp").Length == 0,
                $"the shared encode had not finished within 5 s ({engine.QueueLength} queued, {Directory.GetFiles(file.Directory, "*.tmp").Length} .tmp files)");
            AssertStoreHoldsOnlyWholeEntries(file);
        }

        // Cancelled before anything runs, and at precompute (its first store read / its store write).
        await Attempt(() => { var c = new CancellationTokenSource(); c.Cancel(); return c; }, precomputeFirst: true);
        store.CancelOnRead = 1; await Attempt(() => new CancellationTokenSource(), precomputeFirst: true);
        store.CancelOnWrite = true; await Attempt(() => new CancellationTokenSource(), precomputeFirst: true);
        // While the request loads caches: at its first, second and third store read.
        for (int n = 1; n <= 3; n++)
        {
            store.CancelOnRead = docs.Count + n;
            await Attempt(() => new CancellationTokenSource(), precomputeFirst: false);
        }
        // Timed cancellations sweep queueing, prefill and decoding.
        foreach (int delay in new[] { 0, 2, 5, 10, 20, 40, 80, 160, 320, 640, 30_000 })
        {
            await Attempt(() => new CancellationTokenSource(TimeSpan.FromMilliseconds(delay)), precomputeFirst: true);
        }
        // And during decoding, from the stream.
        using (var cts = new CancellationTokenSource())
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
            {
                await foreach (var u in engine.GenerateStreamingAsync(query, ids, Greedy, cts.Token)) cts.Cancel();
            });
            cancelled++;
        }

        // The same engine, and a fresh one over the same store, answer exactly as the reference.
        Assert.Equal(reference, (await engine.GenerateAsync(query, ids, Greedy)).TokenIds);
        await using (var again = Engine(file))
            Assert.Equal(reference, (await again.GenerateAsync(query, ids, Greedy)).TokenIds);
        Assert.Equal(0, engine.QueueLength);
        for (int i = 0; i < 200 && Directory.GetFiles(file.Directory, "*.tmp").Length > 0; i++) await Task.Delay(25); // bounded: 5 s
        Assert.True(Directory.GetFiles(file.Directory, "*.tmp").Length == 0, "a .tmp file was still there 5 s after the requests ended: a write was abandoned half-way");
        Assert.Equal(0, file.Statistics.Rejected);
        output.WriteLine($"cancellation sweep: {cancelled} requests cancelled, {completed} completed, store consistent after each");
        Assert.True(cancelled >= 6 && completed >= 1, $"{cancelled} cancelled, {completed} completed: the sweep must hit both outcomes");
    }

    private static void AssertStoreHoldsOnlyWholeEntries(FileKvCacheStore store)
    {
        // A write still under way is a hidden temp file, invisible to readers; every visible entry must be whole.
        foreach (string path in Directory.GetFiles(store.Directory, "*.kvc"))
        {
            using var handle = File.OpenHandle(path);
            using var entry = KvCacheFormat.Read(handle, Path.GetFileName(path)); // throws on a partial or corrupt entry
            Assert.Equal(store.PathOf(entry.Key), path);
        }
    }
}
