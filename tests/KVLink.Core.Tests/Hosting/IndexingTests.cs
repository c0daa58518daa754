using KVLink.TestSupport;
using System.Collections.Concurrent;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;

namespace KVLink.Core.Tests.Hosting;

public sealed class IndexingTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    /// <summary>Reports synchronously, on the reporting thread (Progress&lt;T&gt; would post them later).</summary>
    /// <summary>A store that counts writes started and finished, so a test can see whether any is still in flight.</summary>
    private sealed class InFlightWrites(IKvCacheStore inner) : IKvCacheStore
    {
        private int _started, _finished;
        public int InFlight => Volatile.Read(ref _started) - Volatile.Read(ref _finished);
        public int Finished => Volatile.Read(ref _finished);
        public KvCacheStoreStatistics Statistics => inner.Statistics;
        public ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken ct = default) => inner.GetAsync(key, ct);
        public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken ct = default)
        {
            Interlocked.Increment(ref _started);
            try { await inner.PutAsync(key, entry, ct); }
            finally { Interlocked.Increment(ref _finished); }
        }
        public ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken ct = default) => inner.RemoveAsync(key, ct);
        public ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken ct = default) => inner.ContainsAsync(key, ct);
        public ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken ct = default) => inner.InvalidateAsync(scope, ct);
    }

    private sealed class Recorder(Action<KvLinkIndexingProgress>? onReport = null) : IProgress<KvLinkIndexingProgress>
    {
        public ConcurrentQueue<KvLinkIndexingProgress> Reports { get; } = new();
        public void Report(KvLinkIndexingProgress value) { Reports.Enqueue(value); onReport?.Invoke(value); }
    }

    [Fact]
    public async Task Bulk_precompute_reports_progress_and_returns_ids_in_order()
    {
        await using var engine = await fixture.LoadEngineAsync();
        var docs = Enumerable.Range(0, 6).Select(i => CheckpointFixture.Doc(i, words: 8 + i)).ToList();
        var recorder = new Recorder();

        var result = await engine.PrecomputeAllAsync(docs, new KvLinkIndexingOptions { MaxDegreeOfParallelism = 3 }, recorder);

        Assert.Equal(docs.Select(engine.DocumentId), result.DocumentIds);
        long expectedTokens = docs.Select((d, i) => (long)fixture.Format.Document(fixture.Tokenizer, d, 0).Count).Sum();
        Assert.Equal(expectedTokens, result.Tokens);
        Assert.Equal(expectedTokens, result.TokensComputed);
        var reports = recorder.Reports.ToList();
        Assert.Equal(6, reports.Count);
        Assert.All(reports, r => Assert.Equal(6, r.DocumentsTotal));
        Assert.Equal(Enumerable.Range(1, 6), reports.Select(r => r.DocumentsDone).Order());
        var last = reports.MaxBy(r => r.DocumentsDone)!;
        Assert.Equal((expectedTokens, expectedTokens), (last.Tokens, last.TokensComputed));
        Assert.True(last.Elapsed > TimeSpan.Zero);

        // A second run finds everything stored and computes nothing.
        var again = await engine.PrecomputeAllAsync(ToAsync(docs));
        Assert.Equal(result.DocumentIds, again.DocumentIds);
        Assert.Equal(0, again.TokensComputed);
    }

    [Fact]
    public async Task Streamed_corpus_has_no_total()
    {
        await using var engine = await fixture.LoadEngineAsync();
        var recorder = new Recorder();
        var result = await engine.PrecomputeAllAsync(ToAsync(Enumerable.Range(0, 3).Select(i => CheckpointFixture.Doc(10 + i))), progress: recorder);
        Assert.Equal(3, result.DocumentIds.Count);
        Assert.All(recorder.Reports, r => Assert.Null(r.DocumentsTotal));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => engine.PrecomputeAllAsync([CheckpointFixture.Doc(1)], new KvLinkIndexingOptions { MaxDegreeOfParallelism = 0 }));
    }

    [Fact]
    public async Task Cancellation_leaves_only_complete_entries_and_a_rerun_finishes_the_rest()
    {
        var store = new MemoryKvCacheStore();
        var writes = new InFlightWrites(store);
        await using var engine = await fixture.LoadEngineAsync(writes);
        var docs = Enumerable.Range(0, 24).Select(i => CheckpointFixture.Doc(100 + i, words: 40)).ToList();
        using var cts = new CancellationTokenSource();
        var recorder = new Recorder(r => { if (r.DocumentsDone >= 3) cts.Cancel(); });

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            engine.PrecomputeAllAsync(docs, new KvLinkIndexingOptions { MaxDegreeOfParallelism = 2 }, recorder, cts.Token));

        // Nothing of the cancelled run is still being written once it has returned: every write it started has finished
        // (the store counts them, so this needs no waiting to see whether the count still moves).
        Assert.Equal(0, writes.InFlight);
        int stored = store.Count;
        Assert.Equal(writes.Finished, stored);
        Assert.InRange(stored, 3, docs.Count - 1);

        long missingTokens = 0;
        foreach (var doc in docs)
        {
            var tokens = fixture.Format.Document(fixture.Tokenizer, doc, 0);
            var entry = await store.GetAsync(engine.CacheKey(engine.DocumentId(doc), 0));
            if (entry is null) { missingTokens += tokens.Count; continue; }
            Assert.Equal(tokens, entry.TokenIds);
            Assert.Equal(tokens.Count, (int)entry.Keys.shape[2]);
            Assert.Equal(tokens.Count, (int)entry.Values.shape[2]);
        }

        var rerun = await engine.PrecomputeAllAsync(docs);
        Assert.Equal(missingTokens, rerun.TokensComputed);
        Assert.Equal(docs.Count, store.Count);
    }

    private static async IAsyncEnumerable<KvLinkDocument> ToAsync(IEnumerable<KvLinkDocument> docs)
    {
        foreach (var d in docs) { await Task.Yield(); yield return d; }
    }
}
