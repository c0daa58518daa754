using KVLink.TestSupport;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Linking;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>A corpus indexed through the scheduler (several documents per forward) stores what encoding each document alone gives.</summary>
public sealed class BatchedIndexingTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    [Theory]
    [InlineData(512)]
    [InlineData(5)] // documents split into chunks of a few tokens and spread over many steps
    public async Task PrecomputeAll_encodes_documents_together_exactly_as_each_alone(int stepTokens)
    {
        string name = "index-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = new KvLinkEngine(fx.Model, fx.Tokenizer,
            new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, MaxStepTokens = stepTokens },
            null, new KvLinkDiagnostics { Name = name });
        var docs = Enumerable.Range(0, 10).Select(i => CheckpointFixture.Doc(700 + i, 2 + (i * 5) % 17)).ToList();

        // Hold the model thread until every document is queued, so the encodes certainly share steps.
        using var release = new ManualResetEventSlim();
        var hold = engine.OnModelThread(() => release.Wait(TimeSpan.FromSeconds(30)));
        var indexing = engine.PrecomputeAllAsync(docs, new KvLinkIndexingOptions { MaxDegreeOfParallelism = docs.Count });
        for (int i = 0; i < 3000 && engine.QueuedSequences < docs.Count; i++) await Task.Delay(10);
        Assert.Equal(docs.Count, engine.QueuedSequences);
        release.Set();
        await hold;
        var result = await indexing;

        Assert.True(steps.Sequences.Max() >= 2, "no two documents shared a step");
        Assert.True(steps.Tokens.Max() <= stepTokens);
        for (int i = 0; i < docs.Count; i++)
        {
            using var entry = await engine.Store.GetAsync(engine.CacheKey(result.DocumentIds[i], 0));
            Assert.NotNull(entry);
            var (keys, values) = DocumentEncoder.Encode(fx.Model, entry!.TokenIds);
            double scale = keys.abs().max().item<float>();
            Assert.True((entry.Keys - keys).abs().max().item<float>() / scale < 1e-5, $"document {i}: keys differ");
            Assert.True((entry.Values - values).abs().max().item<float>() / values.abs().max().item<float>() < 1e-5, $"document {i}: values differ");
            keys.Dispose();
            values.Dispose();
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_precompute_at_low_priority_yields_the_step_budget_to_a_request_queued_after_it(bool lowPriority)
    {
        string name = "priority-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = new KvLinkEngine(fx.Model, fx.Tokenizer,
            new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, MaxStepTokens = 8, PrecomputeAtLowPriority = lowPriority },
            null, new KvLinkDiagnostics { Name = name });
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(750, 3));
        var greedy = new KvLinkGenerationOptions { MaxNewTokens = 4, StopTokenIds = [] };
        var expected = (await engine.GenerateAsync("first?", [id], greedy)).TokenIds;

        var finished = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var release = new ManualResetEventSlim();
        var hold = engine.OnModelThread(() => release.Wait(TimeSpan.FromSeconds(30)));
        var precompute = engine.PrecomputeAsync(CheckpointFixture.Doc(751, 60)) // queued first: a long document
            .ContinueWith(t => { finished.Enqueue("precompute"); return t; }, TaskScheduler.Default).Unwrap();
        for (int i = 0; i < 3000 && engine.QueuedSequences < 1; i++) await Task.Delay(10);
        var request = engine.GenerateAsync("first?", [id], greedy)            // then a short request
            .ContinueWith(t => { finished.Enqueue("request"); return t; }, TaskScheduler.Default).Unwrap();
        for (int i = 0; i < 3000 && engine.QueuedSequences < 2; i++) await Task.Delay(10);
        Assert.Equal(2, engine.QueuedSequences);
        int before = steps.Sequences.Length;
        release.Set();
        await hold;
        Assert.Equal(expected, (await request).TokenIds);
        await precompute;

        var shared = steps.Sequences[before..].Count(n => n == 2);
        if (lowPriority)
        {
            // The document fills what the request's decoding leaves of each step, and the request, which came second,
            // finishes first (by far: the document still has most of its chunks to run).
            Assert.True(shared >= 3, $"{shared} steps shared");
            Assert.Equal(["request", "precompute"], finished.ToArray());
        }
        else
        {
            // FIFO: the earlier document's prompt takes the whole budget until it is done, so at most the step of its last
            // chunk has room for the request's first rows; the request decodes after it. (Which caller resumes first is
            // not the scheduler's order: the precompute's task completes only after its store write.)
            Assert.True(shared <= 1, $"{shared} steps shared");
        }
    }
}
