using KVLink.TestSupport;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Linking;
using Microsoft.Extensions.Time.Testing;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>
/// A low-priority precompute yields to requests only for <see cref="KvLinkOptions.PrecomputeMaxWait"/>: past it, it is
/// admitted ahead of queued requests and shares the step budget with their prompts, so it completes under interactive
/// load that never lets up. The clock is a <see cref="FakeTimeProvider"/>: nothing waits for real time.
/// </summary>
public sealed class PrecomputeAgingTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private static int[] Tokens(int seed, int count) => [.. Enumerable.Range(0, count).Select(i => 3 + (seed * 37 + i * 11) % 200)];

    [Fact]
    public async Task A_background_encode_starved_by_requests_runs_once_it_has_waited_PrecomputeMaxWait()
    {
        var model = fx.Model;
        var time = new FakeTimeProvider();
        var scheduler = new BatchScheduler(model, new KvLinkOptions
        {
            DType = ComputeDType.Float32, MaxRunningSequences = 2, MaxStepTokens = 8,
            PrecomputeMaxWait = TimeSpan.FromSeconds(10), TimeProvider = time,
        }, null, () => { });
        var document = Tokens(7, 40);
        var background = new EncodeSequence(model, document, background: true);
        scheduler.Submit(background);
        var requests = new List<EncodeSequence>();
        void Load()
        {
            // Three requests wait before every step: when two are admitted (both running ones left), one still waits,
            // so a request is queued at every admission and interactive work never runs short.
            while (scheduler.Queued - (background.QueueNode is null ? 0 : 1) < 3)
            {
                var r = new EncodeSequence(model, Tokens(requests.Count, 12), background: false);
                requests.Add(r);
                scheduler.Submit(r);
            }
        }
        int Answered() => requests.Count(r => r.Task.IsCompletedSuccessfully);

        for (int step = 0; step < 60; step++)
        {
            Load();
            scheduler.Step();
            time.Advance(TimeSpan.FromSeconds(0.1)); // 6 s in all: under the bound
            Assert.NotNull(background.QueueNode); // starved: never admitted while requests wait
        }
        int answeredBefore = Answered();
        Assert.True(answeredBefore >= 20, $"only {answeredBefore} requests were answered");

        time.Advance(TimeSpan.FromSeconds(4)); // it has now waited 10 s
        int steps = 0;
        for (; steps < 100 && !background.Task.IsCompleted; steps++)
        {
            Load();
            scheduler.Step();
        }
        Assert.True(background.Task.IsCompletedSuccessfully, $"the aged encode did not complete in {steps} steps");
        Assert.True(Answered() > answeredBefore, "requests stopped being answered while the aged encode ran");
        var (keys, values) = await background.Task;
        var (expectedKeys, expectedValues) = DocumentEncoder.Encode(model, document);
        Assert.True((keys - expectedKeys).abs().max().item<float>() / expectedKeys.abs().max().item<float>() < 1e-5);
        Assert.True((values - expectedValues).abs().max().item<float>() / expectedValues.abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public async Task A_precompute_completes_while_a_queue_of_requests_keeps_the_engine_full()
    {
        var time = new FakeTimeProvider();
        string name = "aging-" + Guid.NewGuid().ToString("N");
        await using var engine = new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions
        {
            LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, MaxRunningSequences = 2, MaxStepTokens = 8,
            PrecomputeMaxWait = TimeSpan.FromSeconds(10), TimeProvider = time,
        }, null, new KvLinkDiagnostics { Name = name });
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(760, 3));
        var greedy = new KvLinkGenerationOptions { MaxNewTokens = 6, StopTokenIds = [] };
        var expected = (await engine.GenerateAsync("busy?", [id], greedy)).TokenIds;

        // Many requests queued at once, then the precompute behind them: without aging it could join only when the
        // request queue is empty, that is when all but the last two requests are answered.
        const int count = 48;
        var finished = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var release = new ManualResetEventSlim();
        var hold = engine.OnModelThread(() => release.Wait(TimeSpan.FromSeconds(30)));
        var requests = Enumerable.Range(0, count).Select(i => engine.GenerateAsync("busy?", [id], greedy)
            .ContinueWith(t => { finished.Enqueue("request"); return t; }, TaskScheduler.Default).Unwrap()).ToArray();
        for (int i = 0; i < 3000 && engine.QueuedSequences < count; i++) await Task.Delay(10);
        Assert.Equal(count, engine.QueuedSequences);
        var precompute = engine.PrecomputeAsync(CheckpointFixture.Doc(761, 60))
            .ContinueWith(t => { finished.Enqueue("precompute"); return t; }, TaskScheduler.Default).Unwrap();
        for (int i = 0; i < 3000 && engine.QueuedSequences < count + 1; i++) await Task.Delay(10);
        Assert.Equal(count + 1, engine.QueuedSequences);
        // The model thread runs one queued item between two steps: the clock moves past the bound after exactly 21 steps
        // of requests, long before the request queue empties.
        for (int i = 0; i < 20; i++) _ = engine.OnModelThread(() => 0);
        var advanced = engine.OnModelThread(() =>
        {
            bool done = precompute.IsCompleted;
            time.Advance(TimeSpan.FromSeconds(10));
            return done;
        });
        release.Set();
        Assert.True(await hold);
        Assert.False(await advanced, "the precompute ran before it had waited");
        string documentId = await precompute;

        foreach (var r in await Task.WhenAll(requests)) Assert.Equal(expected, r.TokenIds);
        int position = Array.IndexOf(finished.ToArray(), "precompute");
        Assert.True(position < count / 2, $"the precompute completed after {position} of {count} requests: it waited for the request queue to empty");
        using var entry = await engine.Store.GetAsync(engine.CacheKey(documentId, 0));
        Assert.NotNull(entry);
        var (keys, values) = DocumentEncoder.Encode(fx.Model, entry!.TokenIds);
        Assert.True((entry.Keys - keys).abs().max().item<float>() / keys.abs().max().item<float>() < 1e-5);
        Assert.True((entry.Values - values).abs().max().item<float>() / values.abs().max().item<float>() < 1e-5);
    }
}
