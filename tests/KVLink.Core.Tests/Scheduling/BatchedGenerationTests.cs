using KVLink.TestSupport;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Generation;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>
/// Continuous batching is exact: requests decoded together in shared forward steps (f32) give the tokens each gives run
/// alone, whatever their prompt lengths, link tokens, modes, budgets and streaming, and whoever is cancelled half-way.
/// </summary>
public sealed class BatchedGenerationTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    /// <summary>A mixed bag of requests: documents, question lengths, K, modes and token budgets all differ.</summary>
    private static List<(string Query, int[] Docs, KvLinkGenerationOptions Options, bool Stream)> Requests() =>
    [
        ("Which word comes first?", [0, 1, 2], Greedy(14, k: 1), false),
        ("w3?", [3], Greedy(9, k: 5), true),
        ("Name the title of the second document and then the first word of it, please.", [4, 0], Greedy(20, k: 0), false),
        ("Full?", [1, 2], Greedy(11, k: 1, ContextMode.FullPrefill), true),
        ("What follows w7 in the text about the title?", [2, 5, 3, 1], Greedy(16, k: 5), false),
        ("Short", [5], Greedy(3, k: 1, ContextMode.FullPrefill), false),
        ("And the last one asks about documents in another order?", [5, 4, 3, 2, 1], Greedy(18, k: 1), true),
        ("Why?", [0], Greedy(12, k: 0), true),
    ];

    private static KvLinkGenerationOptions Greedy(int tokens, int k, ContextMode mode = ContextMode.KvLink) =>
        new() { MaxNewTokens = tokens, StopTokenIds = [], LinkTokens = k, Mode = mode };

    private KvLinkEngine Engine(string name, int maxRunning = 16, int stepTokens = 512, long cacheBytes = long.MaxValue) =>
        new(fx.Model, fx.Tokenizer, new KvLinkOptions
        {
            LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32,
            PrecomputeSlots = 6, // every slot cached up front: only generation requests queue while the thread is held
            MaxRunningSequences = maxRunning, MaxStepTokens = stepTokens, MaxLiveCacheBytes = cacheBytes,
        }, null, new KvLinkDiagnostics { Name = name });

    private static async Task<List<string>> Precompute(KvLinkEngine engine)
    {
        var ids = new List<string>();
        for (int i = 0; i < 6; i++) ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(900 + i, 3 + 5 * i)));
        return ids;
    }

    private static async Task<GenerationResult> Run(KvLinkEngine engine, string query, IReadOnlyList<string> docs, KvLinkGenerationOptions options, bool stream, CancellationToken ct = default)
    {
        if (!stream) return await engine.GenerateAsync(query, docs, options, ct);
        GenerationResult? final = null;
        await foreach (var u in engine.GenerateStreamingAsync(query, docs, options, ct)) final = u.Result ?? final;
        return final!;
    }

    /// <summary>Each request alone, one at a time, on an engine limited to one running sequence.</summary>
    private async Task<List<IReadOnlyList<int>>> Alone(List<(string Query, int[] Docs, KvLinkGenerationOptions Options, bool Stream)> requests)
    {
        await using var serial = Engine("alone-" + Guid.NewGuid().ToString("N"), maxRunning: 1);
        var ids = await Precompute(serial);
        var tokens = new List<IReadOnlyList<int>>();
        foreach (var r in requests) tokens.Add((await Run(serial, r.Query, [.. r.Docs.Select(d => ids[d])], r.Options, r.Stream)).TokenIds);
        return tokens;
    }

    /// <summary>
    /// Holds the model thread until every request is queued (then runs <paramref name="queuedLast"/>, which may queue
    /// more), so that they are admitted and stepped together.
    /// </summary>
    private static async Task<T[]> Together<T>(KvLinkEngine engine, int count, Func<int, Task<T>> start, Action? queuedLast = null)
    {
        using var release = new ManualResetEventSlim();
        var hold = engine.OnModelThread(() => release.Wait(TimeSpan.FromSeconds(30)));
        // One at a time, each queued before the next starts: the queue, and so the admission order and the steps' make-up,
        // is the requests' order whatever the thread pool does (a loaded machine once admitted them in an order whose
        // answers ended before three could share a step).
        var tasks = new Task<T>[count];
        for (int i = 0; i < count; i++)
        {
            int k = i;
            tasks[k] = Task.Run(() => start(k));
            for (int w = 0; w < 3000 && engine.QueuedSequences < k + 1; w++) await Task.Delay(10); // bounded: 30 s each
        }
        Assert.Equal(count, engine.QueuedSequences);
        queuedLast?.Invoke();
        release.Set();
        Assert.True(await hold, "the model thread was held too long");
        return await Task.WhenAll(tasks);
    }

    [Theory]
    [InlineData(4096)] // every new prompt fits one step
    [InlineData(7)]   // prompts split into chunks of a few tokens, interleaved with others' decoding
    public async Task Requests_decoded_together_give_the_tokens_each_gives_alone(int stepTokens)
    {
        var requests = Requests();
        var alone = await Alone(requests);

        string name = "batched-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Engine(name, stepTokens: stepTokens);
        var ids = await Precompute(engine);
        int before = steps.Sequences.Length;
        var wall = System.Diagnostics.Stopwatch.StartNew();
        var results = await Together(engine, requests.Count, i => Run(engine, requests[i].Query, [.. requests[i].Docs.Select(d => ids[d])], requests[i].Options, requests[i].Stream));
        wall.Stop();

        // One duration per step, each real time spent, and the steps of the batched requests (one model thread) within
        // the time those requests took.
        var durations = steps.Durations;
        Assert.Equal(steps.Sequences.Length, durations.Length);
        Assert.All(durations, d => Assert.True(d > 0, "a step took no time"));
        Assert.True(durations[before..].Sum() <= wall.Elapsed.TotalSeconds, $"steps of {durations[before..].Sum():F3} s within {wall.Elapsed.TotalSeconds:F3} s");
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(alone[i], results[i].TokenIds);
            Assert.Equal(requests[i].Options.MaxNewTokens, results[i].Usage.GeneratedTokens);
        }
        // All eight shared steps; with a tiny budget, short answers may end before the longest prompts are in.
        Assert.True(steps.Sequences.Max() >= (stepTokens >= 4096 ? requests.Count : 3), $"at most {steps.Sequences.Max()} sequences shared a step");
        Assert.True(steps.Tokens.Max() <= Math.Max(stepTokens, requests.Count), $"a step ran {steps.Tokens.Max()} rows over a budget of {stepTokens}");
        Assert.Equal(0, engine.QueueLength);
    }

    [Fact]
    public async Task With_int8_decode_weights_decoding_rows_use_them_and_batched_requests_still_equal_each_alone()
    {
        // A model of its own: the option adds int8 copies to the model it is given.
        using var model = fx.LoadModel();
        KvLinkEngine Int8(string name, int maxRunning, int stepTokens) => new(model, fx.Tokenizer, new KvLinkOptions
        {
            LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, PrecomputeSlots = 6,
            MaxRunningSequences = maxRunning, MaxStepTokens = stepTokens, DecodeWithInt8Weights = true,
        }, null, new KvLinkDiagnostics { Name = name });
        if (KVLink.Core.Model.DecodeGemv.Detected == KVLink.Core.Model.DecodeKernel.Scalar)
        {
            // No vector decode kernel on this CPU: the option is refused at load, naming the CPU, never run on scalar loops.
            var e = Assert.Throws<NotSupportedException>(() => Int8("int8-refused-" + Guid.NewGuid().ToString("N"), 1, 512));
            Assert.Contains("DecodeWithInt8Weights", e.Message);
            return;
        }
        var requests = Requests().Select(r => (r.Query, r.Docs, Options: r.Options with { Logprobs = true }, r.Stream)).ToList();

        async Task<List<GenerationResult>> AloneOn(KvLinkEngine engine)
        {
            var ids = await Precompute(engine);
            var results = new List<GenerationResult>();
            foreach (var r in requests) results.Add(await Run(engine, r.Query, [.. r.Docs.Select(d => ids[d])], r.Options, r.Stream));
            return results;
        }
        List<GenerationResult> alone, plain;
        await using (var serial = Int8("int8-alone-" + Guid.NewGuid().ToString("N"), maxRunning: 1, stepTokens: 512)) alone = await AloneOn(serial);
        await using (var full = Engine("plain-" + Guid.NewGuid().ToString("N"), maxRunning: 1)) plain = await AloneOn(full);

        // Prompt tokens never use int8: every first token's log probability is the full-precision one. Decode steps do.
        for (int i = 0; i < requests.Count; i++) Assert.Equal(plain[i].Logprobs![0].Logprob, alone[i].Logprobs![0].Logprob);
        Assert.Contains(Enumerable.Range(0, requests.Count), i => Enumerable.Range(1, Math.Min(alone[i].Logprobs!.Count, plain[i].Logprobs!.Count) - 1)
            .Any(t => alone[i].Logprobs![t].TokenId == plain[i].Logprobs![t].TokenId && alone[i].Logprobs![t].Logprob != plain[i].Logprobs![t].Logprob));

        // Batched, with prompt chunks sharing steps with decoding rows (budget 7): the same tokens and the same numbers.
        string name = "int8-batched-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Int8(name, maxRunning: 16, stepTokens: 7);
        var bids = await Precompute(engine);
        var together = await Together(engine, requests.Count, i => Run(engine, requests[i].Query, [.. requests[i].Docs.Select(d => bids[d])], requests[i].Options, requests[i].Stream));
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(alone[i].TokenIds, together[i].TokenIds);
            Assert.Equal(alone[i].Logprobs!.Select(l => l.Logprob), together[i].Logprobs!.Select(l => l.Logprob));
        }
        Assert.True(steps.Sequences.Max() >= 3, $"at most {steps.Sequences.Max()} sequences shared a step");
    }

    [Fact]
    public async Task Requests_cancelled_half_way_leave_and_the_others_are_unchanged()
    {
        var requests = Requests();
        var alone = await Alone(requests);
        string name = "cancel-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Engine(name);
        var ids = await Precompute(engine);
        var cancelled = new HashSet<int> { 2, 4, 6 };

        var outcomes = await Together(engine, requests.Count, async i =>
        {
            var r = requests[i];
            var docs = r.Docs.Select(d => ids[d]).ToArray();
            if (!cancelled.Contains(i)) return (Tokens: (await Run(engine, r.Query, docs, r.Options, r.Stream)).TokenIds, Cancelled: false);
            // Cancel after the third streamed token: the request is in the running batch by then.
            using var cts = new CancellationTokenSource();
            int seen = 0;
            try
            {
                await foreach (var u in engine.GenerateStreamingAsync(r.Query, docs, r.Options, cts.Token))
                    if (u.Result is null && ++seen == 3) cts.Cancel();
            }
            catch (OperationCanceledException) { return (Tokens: (IReadOnlyList<int>)[], Cancelled: true); }
            return (Tokens: (IReadOnlyList<int>)[], Cancelled: false);
        });

        for (int i = 0; i < requests.Count; i++)
        {
            if (cancelled.Contains(i)) Assert.True(outcomes[i].Cancelled, $"request {i} was not cancelled");
            else Assert.Equal(alone[i], outcomes[i].Tokens);
        }
        Assert.Equal(requests.Count, steps.Sequences.Max());
        // The cancelled ones leave and free their caches: a cancelled caller returns as soon as its token fires, and the
        // scheduler drops the sequence at its next step, so wait (bounded) for that step before looking.
        for (int i = 0; i < 200 && (engine.QueueLength != 0 || engine.RunningSequences != 0); i++) await Task.Delay(50);
        Assert.Equal(0, engine.QueueLength);
        Assert.Equal(0, engine.RunningSequences);
    }

    [Theory]
    [InlineData(4096)] // it fails in the first step, among every prompt
    [InlineData(7)]    // it fails a step or two after the last prompt is in, among decoding requests
    public async Task A_sequence_whose_own_forward_fails_fails_alone_and_the_others_give_the_tokens_they_give_alone(int stepTokens)
    {
        var requests = Requests();
        var alone = await Alone(requests);
        string name = "isolate-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Engine(name, stepTokens: stepTokens);
        var ids = await Precompute(engine);
        // Queued after every request, so admitted last: its 2 rows come once every earlier prompt is in, and its second
        // position is beyond its cache. The batched forward of that step throws at layer 0, after the sequences before it
        // wrote their keys and values there.
        var broken = new BrokenSequence(fx.Model, tokens: 2, capacity: 1);
        var results = await Together(engine, requests.Count,
            i => Run(engine, requests[i].Query, [.. requests[i].Docs.Select(d => ids[d])], requests[i].Options, requests[i].Stream),
            queuedLast: () => engine.Scheduler.Submit(broken));

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => broken.Task);
        Assert.Contains("beyond its capacity", error.Message);
        for (int i = 0; i < requests.Count; i++) Assert.Equal(alone[i], results[i].TokenIds);
        // The failed step was a batched one (a step of one sequence is not retried), rerun one sequence at a time.
        Assert.Equal(1, steps.FailedSteps);
        Assert.Equal(0, engine.RunningSequences);
        Assert.Equal(0, engine.QueueLength);
    }

    [Fact]
    public async Task At_most_MaxRunningSequences_run_at_once_and_the_rest_wait_in_order()
    {
        var requests = Requests();
        var alone = await Alone(requests);
        string name = "limit-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Engine(name, maxRunning: 3);
        var ids = await Precompute(engine);
        var results = await Together(engine, requests.Count, i => Run(engine, requests[i].Query, [.. requests[i].Docs.Select(d => ids[d])], requests[i].Options, requests[i].Stream));
        for (int i = 0; i < requests.Count; i++) Assert.Equal(alone[i], results[i].TokenIds);
        Assert.Equal(3, steps.Sequences.Max());
        Assert.Equal(requests.Count, steps.QueueWaits.Length);
    }

    [Fact]
    public async Task A_cache_byte_budget_admits_one_request_at_a_time_when_two_do_not_fit()
    {
        var requests = Requests();
        var alone = await Alone(requests);
        string name = "bytes-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Engine(name, cacheBytes: 1); // any request alone exceeds it: one at a time, never none
        var ids = await Precompute(engine);
        var results = await Together(engine, requests.Count, i => Run(engine, requests[i].Query, [.. requests[i].Docs.Select(d => ids[d])], requests[i].Options, requests[i].Stream));
        for (int i = 0; i < requests.Count; i++) Assert.Equal(alone[i], results[i].TokenIds);
        Assert.Equal(1, steps.Sequences.Max());
    }

    [Fact]
    public async Task A_request_cancelled_while_queued_behind_the_batch_never_runs()
    {
        string name = "queued-" + Guid.NewGuid().ToString("N");
        await using var engine = Engine(name, maxRunning: 1);
        var ids = await Precompute(engine);
        using var release = new ManualResetEventSlim();
        using var holding = new ManualResetEventSlim();
        var hold = engine.OnModelThread(() => { holding.Set(); return release.Wait(TimeSpan.FromSeconds(30)); });
        Assert.True(holding.Wait(TimeSpan.FromSeconds(30)));
        var first = engine.GenerateAsync("first?", [ids[0]], Greedy(6, k: 1));
        using var cts = new CancellationTokenSource();
        var second = engine.GenerateAsync("second?", [ids[1]], Greedy(6, k: 1), cts.Token);
        for (int i = 0; i < 3000 && engine.QueuedSequences < 2; i++) await Task.Delay(10);
        Assert.Equal(2, engine.QueuedSequences);
        long started = engine.WorkStarted;
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => second);
        release.Set();
        await hold;
        Assert.Equal(6, (await first).TokenIds.Count);
        Assert.Equal(started + 1, engine.WorkStarted); // the first request (the hold had started); never the second
        Assert.Equal(0, engine.QueueLength);
    }

    [Fact]
    public async Task Dispose_drains_the_running_batch_and_the_queue()
    {
        var requests = Requests();
        var alone = await Alone(requests);
        var engine = Engine("drain-" + Guid.NewGuid().ToString("N"), maxRunning: 2);
        var ids = await Precompute(engine);
        using var release = new ManualResetEventSlim();
        var hold = engine.OnModelThread(() => release.Wait(TimeSpan.FromSeconds(30)));
        var tasks = requests.Select(r => engine.GenerateAsync(r.Query, [.. r.Docs.Select(d => ids[d])], r.Options)).ToArray();
        for (int i = 0; i < 3000 && engine.QueuedSequences < requests.Count; i++) await Task.Delay(10);
        Assert.Equal(requests.Count, engine.QueuedSequences);
        var disposing = Task.Run(engine.Dispose);
        release.Set();
        await disposing;
        var results = await Task.WhenAll(tasks);
        for (int i = 0; i < requests.Count; i++) Assert.Equal(alone[i], results[i].TokenIds);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => engine.GenerateAsync("late?", [ids[0]]));
        await hold;
    }
}
