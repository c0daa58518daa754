using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;

namespace KVLink.Core.Tests.Engine;

/// <summary>Bad input gets a clear exception naming the problem.</summary>
public class EngineInputTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    [Fact]
    public async Task Unknown_document_id_is_named()
    {
        await using var engine = fx.Engine();
        var e = await Assert.ThrowsAsync<KeyNotFoundException>(() => engine.GenerateAsync("q?", ["nope-123"]));
        Assert.Contains("nope-123", e.Message);
        e = await Assert.ThrowsAsync<KeyNotFoundException>(() => engine.GenerateAsync("q?", ["nope-456"], new KvLinkGenerationOptions { Mode = ContextMode.FullPrefill }));
        Assert.Contains("nope-456", e.Message);
    }

    [Fact]
    public async Task Empty_query_and_empty_document_are_rejected()
    {
        await using var engine = fx.Engine();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(1, 3));
        Assert.Contains("query", (await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("  ", [id]))).Message);
        Assert.Contains("empty", (await Assert.ThrowsAsync<ArgumentException>(() => engine.PrecomputeAsync(new KvLinkDocument(" \n")))).Message);
        await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("q?", [""]));
    }

    [Fact]
    public async Task More_documents_than_link_token_ids_is_rejected_with_the_numbers()
    {
        await using var engine = fx.Engine(linkTokens: 5);
        var ids = Enumerable.Range(0, 49).Select(i => $"d{i}").ToArray(); // 49 * 5 = 245 > 243 ids
        var e = await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("q?", ids));
        Assert.Contains("245", e.Message);
        Assert.Contains("243", e.Message);
    }

    [Fact]
    public void Link_token_count_the_format_cannot_support_is_rejected_at_start()
    {
        var e = Assert.Throws<ArgumentException>(() => new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 244, PromptFormat = fx.Format }));
        Assert.Contains("244", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions { Generation = new() { Temperature = -1 } }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions { Generation = new() { TopP = 0 } }));
    }

    [Fact]
    public async Task Documents_and_contexts_longer_than_the_model_allows_are_rejected()
    {
        await using var engine = fx.Engine();
        int max = fx.Model.Config.MaxPositionEmbeddings;
        var tooLong = new KvLinkDocument(new string('x', max + 10));
        var e = await Assert.ThrowsAsync<ArgumentException>(() => engine.PrecomputeAsync(tooLong));
        Assert.Contains($"{max}", e.Message);

        var ids = new List<string>();
        for (int i = 0; i < 3; i++) ids.Add(await engine.PrecomputeAsync(new KvLinkDocument(new string((char)('a' + i), max / 3), $"t{i}")));
        e = await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("q?", ids));
        Assert.Contains("prompt has", e.Message);
    }

    [Fact]
    public async Task Use_after_dispose_throws_ObjectDisposedException()
    {
        var engine = fx.Engine();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(2, 3));
        await engine.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => engine.GenerateAsync("q?", [id]));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => engine.PrecomputeAsync(CheckpointFixture.Doc(3, 3)));
    }

    [Fact]
    public async Task Ids_are_content_addressed_and_stable_across_engines()
    {
        await using var a = fx.Engine();
        await using var b = fx.Engine();
        var doc = CheckpointFixture.Doc(9, 4);
        Assert.Equal(await a.PrecomputeAsync(doc), await b.PrecomputeAsync(doc));
        Assert.NotEqual(a.DocumentId(doc), a.DocumentId(doc with { Title = "other" }));
        Assert.Equal("mine", await a.PrecomputeAsync(doc with { Id = "mine" }));
        Assert.Matches("^doc-[0-9a-f]{32}$", a.DocumentId(doc));
    }

    [Fact]
    public async Task Cancellation_before_start_leaves_the_engine_usable()
    {
        await using var engine = fx.Engine();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(4, 3));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.GenerateAsync("q?", [id], null, cts.Token));
        var ok = await engine.GenerateAsync("q?", [id], new KvLinkGenerationOptions { MaxNewTokens = 2 });
        Assert.InRange(ok.TokenIds.Count, 0, 2);
    }

    [Fact]
    public async Task A_request_cancelled_while_queued_never_runs_and_the_one_ahead_completes()
    {
        // One running request at a time, so the second one really waits in the queue behind the first, whatever the
        // timing: with the default batch it would be admitted at the next step, and a test thread descheduled between its
        // submission and the cancel (a loaded CI machine) would see it start.
        await using var engine = new KvLinkEngine(fx.Model, fx.Tokenizer,
            new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, MaxRunningSequences = 1 });
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(5, 6));
        long before = engine.WorkStarted;
        var longRun = engine.GenerateAsync("long?", [id], new KvLinkGenerationOptions { MaxNewTokens = 300, StopTokenIds = [] });
        // Preparation is asynchronous: wait until the long run holds the one place before the second request arrives.
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (engine.WorkStarted < before + 1)
        {
            Assert.True(waited.Elapsed < TimeSpan.FromMinutes(1), "the long run never started");
            await Task.Delay(1);
        }
        using var cts = new CancellationTokenSource();
        var queued = engine.GenerateAsync("queued?", [id], new KvLinkGenerationOptions { MaxNewTokens = 5 }, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        Assert.Equal(300, (await longRun).TokenIds.Count);
        Assert.True(queued.IsCanceled);

        // The worker runs in arrival order, so once a later request has finished, the cancelled one has been dequeued:
        // had it run, the worker would have started three work items here, not two (the long run and this one).
        Assert.NotNull(await engine.GenerateAsync("after?", [id], new KvLinkGenerationOptions { MaxNewTokens = 1 }));
        Assert.Equal(before + 2, engine.WorkStarted);
        Assert.Equal(0, engine.QueueLength);
    }

    [Fact]
    public async Task Cancellation_during_decoding_stops_between_steps()
    {
        await using var engine = fx.Engine();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(6, 6));
        using var cts = new CancellationTokenSource();
        int deltas = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var u in engine.GenerateStreamingAsync("q?", [id], new KvLinkGenerationOptions { MaxNewTokens = 500, StopTokenIds = [] }, cts.Token))
                if (++deltas == 2) cts.Cancel();
        });
        Assert.Equal(2, deltas); // nothing is delivered after cancellation, even if already generated
        Assert.NotNull(await engine.GenerateAsync("after?", [id], new KvLinkGenerationOptions { MaxNewTokens = 2 }));
    }
}
