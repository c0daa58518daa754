using KVLink.TestSupport;
using System.Collections.Concurrent;
using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Tests.Engine;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// Many concurrent callers mixing precompute, generate (plain and streaming) and remove against a memory store
/// whose byte budget holds only a few documents, so evictions really happen. Every request either returns
/// exactly the answer a sequential run on a fresh engine gives, or fails with a clear, expected error (an id
/// removed by another caller); none hangs (each is bounded); the store never holds more than its budget.
/// Runs KVLINK_STRESS_SECONDS seconds (default 6; docs/reliability.md has the long run).
/// </summary>
[Collection(SerialCollection.Name)] // reads the process RSS
public sealed class StressTests(CheckpointFixture fx, ITestOutputHelper output) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 4, StopTokenIds = [] };
    private static readonly TimeSpan RequestBound = TimeSpan.FromSeconds(120);

    private static int Seconds => int.TryParse(Environment.GetEnvironmentVariable("KVLINK_STRESS_SECONDS"), out int s) && s > 0 ? s : 6;

    private KvLinkEngine Engine(IKvCacheStore store) =>
        new(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32 }, store);

    [Fact]
    public async Task Concurrent_precompute_generate_remove_under_eviction_serve_only_sequential_answers()
    {
        var docs = Enumerable.Range(0, 8).Select(i => CheckpointFixture.Doc(300 + i, 6 + i % 4)).ToArray();
        string[] queries = ["Which word?", "Name the title."];
        int[][] combos = [[0, 1], [2, 3, 4], [5], [6, 7], [1, 4, 6], [3, 0]];

        // The sequential reference: a fresh engine, unbounded store, one request at a time.
        var reference = new Dictionary<(int, int), IReadOnlyList<int>>();
        string[] ids = new string[docs.Length];
        long entryBytes;
        var unbounded = new MemoryKvCacheStore();
        await using (var fresh = Engine(unbounded))
        {
            for (int d = 0; d < docs.Length; d++) ids[d] = await fresh.PrecomputeAsync(docs[d]);
            entryBytes = unbounded.ByteSize / unbounded.Count;
            for (int c = 0; c < combos.Length; c++)
                for (int q = 0; q < queries.Length; q++)
                    reference[(c, q)] = (await fresh.GenerateAsync(queries[q], [.. combos[c].Select(d => ids[d])], Greedy)).TokenIds;
        }

        long budget = 4 * entryBytes; // about 4 of the ~20 (document, slot) caches in play
        var store = new MemoryKvCacheStore(new() { ByteBudget = budget });
        await using var engine = Engine(store);
        var served = new ConcurrentDictionary<string, int>();
        var errors = new ConcurrentDictionary<string, int>();
        var wrong = new ConcurrentBag<string>();
        long peakBytes = 0, peakRss = Environment.WorkingSet, startRss = Environment.WorkingSet;
        var deadline = Stopwatch.StartNew();
        var duration = TimeSpan.FromSeconds(Seconds);
        using var stopMonitor = new CancellationTokenSource();

        var monitor = Task.Run(async () =>
        {
            while (!stopMonitor.IsCancellationRequested)
            {
                peakBytes = Math.Max(peakBytes, store.ByteSize);
                peakRss = Math.Max(peakRss, Environment.WorkingSet);
                try { await Task.Delay(2, stopMonitor.Token); } catch (OperationCanceledException) { }
            }
        });

        async Task Caller(int seed)
        {
            var random = new Random(seed);
            while (deadline.Elapsed < duration)
            {
                int op = random.Next(10), c = random.Next(combos.Length), q = random.Next(queries.Length), d = random.Next(docs.Length);
                string kind = op switch { < 4 => "generate", < 6 => "stream", < 9 => "precompute", _ => "remove" };
                try
                {
                    switch (kind)
                    {
                        case "generate":
                        {
                            var r = await engine.GenerateAsync(queries[q], [.. combos[c].Select(x => ids[x])], Greedy).WaitAsync(RequestBound);
                            if (!r.TokenIds.SequenceEqual(reference[(c, q)])) wrong.Add($"generate combo {c} query {q}");
                            break;
                        }
                        case "stream":
                        {
                            IReadOnlyList<int>? tokens = null;
                            await foreach (var u in engine.GenerateStreamingAsync(queries[q], [.. combos[c].Select(x => ids[x])], Greedy).WithCancellation(default))
                                if (u.Result is { } result) tokens = result.TokenIds;
                            if (tokens is null || !tokens.SequenceEqual(reference[(c, q)])) wrong.Add($"stream combo {c} query {q}");
                            break;
                        }
                        case "precompute":
                            if (await engine.PrecomputeAsync(docs[d]).WaitAsync(RequestBound) != ids[d]) wrong.Add($"precompute {d} gave another id");
                            break;
                        default:
                            await engine.RemoveDocumentAsync(ids[d]).WaitAsync(RequestBound);
                            break;
                    }
                    served.AddOrUpdate(kind, 1, (_, n) => n + 1);
                }
                catch (KeyNotFoundException)
                {
                    // Expected: another caller removed one of the documents and nobody precomputed it again yet.
                    errors.AddOrUpdate("KeyNotFoundException (removed id)", 1, (_, n) => n + 1);
                }
                catch (Exception e)
                {
                    errors.AddOrUpdate(e.GetType().Name, 1, (_, n) => n + 1);
                    wrong.Add($"{kind}: {e.GetType().Name}: {e.Message}");
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 6).Select(s => Task.Run(() => Caller(1000 + s))));
        await stopMonitor.CancelAsync();
        await monitor;
        peakBytes = Math.Max(peakBytes, store.ByteSize);
        var stats = store.Statistics;

        output.WriteLine($"stress: {Seconds} s, 6 callers, {served.Values.Sum()} requests served ({string.Join(", ", served.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}"))}); "
            + $"errors: {(errors.IsEmpty ? "none" : string.Join(", ", errors.Select(p => $"{p.Key} {p.Value}")))}; wrong answers {wrong.Count}; "
            + $"store: budget {budget} B, peak {peakBytes} B, evictions {stats.Evictions}, hits {stats.Hits}, misses {stats.Misses}; "
            + $"RSS start {startRss >> 20} MiB, peak {peakRss >> 20} MiB");
        Assert.Empty(wrong);
        Assert.True(peakBytes <= budget, $"the store held {peakBytes} bytes, over its {budget}-byte budget");
        Assert.True(stats.Evictions > 0, "the budget must force evictions, or the run proved nothing about them");
        Assert.True(served.GetValueOrDefault("generate") > 0 && served.GetValueOrDefault("stream") > 0 && served.GetValueOrDefault("remove") > 0);
        Assert.True(peakRss - startRss < 1L << 30, $"RSS grew by {(peakRss - startRss) >> 20} MiB");
    }
}
