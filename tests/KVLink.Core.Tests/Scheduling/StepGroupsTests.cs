using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using static TorchSharp.torch;
using static KVLink.Core.Tests.Scheduling.CacheAssert;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>
/// A step of several sequences run as groups side by side, one per OpenMP thread (<see cref="StepGroups"/>): the plan
/// splits only where it pays, and each group's logits and caches are those of one forward over every row (float32).
/// </summary>
public sealed class StepGroupsTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private const long Small = 1L << 20, Large = 1L << 30;

    private static long[] Range(int from, int count) => [.. Enumerable.Range(from, count).Select(i => (long)i)];

    private static int[] Tokens(int seed, int count) => [.. Enumerable.Range(0, count).Select(i => 3 + (seed * 37 + i * 11) % 200)];

    [Theory]
    [InlineData(new[] { 57, 57, 57, 57, 57, 57, 57, 57 }, 2, Small, new[] { 0, 4 })]  // eight prompts of a burst: four each
    [InlineData(new[] { 1, 1, 1, 1, 1, 1, 1, 1 }, 2, Small, new[] { 0, 4 })]          // eight decoding rows of a small model
    [InlineData(new[] { 10, 10, 10, 10, 10, 10 }, 3, Small, new[] { 0, 2, 4 })]      // three threads
    [InlineData(new[] { 5, 17, 12, 9, 30 }, 2, Small, new[] { 0, 4 })]              // uneven, still within 1.5x of an even share
    [InlineData(new[] { 100, 100, 100, 100 }, 2, Large, new[] { 0, 2 })]            // a large model whose groups are compute-bound
    public void A_step_that_divides_evenly_splits_into_contiguous_groups(int[] rows, int threads, long weightBytes, int[] expected) =>
        Assert.Equal(expected, StepGroups.Plan(rows, threads, weightBytes));

    [Theory]
    [InlineData(new[] { 512, 8 }, 2, Small)]              // one long chunk: a group cannot be shared, so one forward over every thread
    [InlineData(new[] { 57, 57 }, 1, Small)]              // one thread
    [InlineData(new[] { 57 }, 2, Small)]                  // one sequence
    [InlineData(new[] { 1, 1, 1, 1, 1, 1, 1, 1 }, 2, Large)] // decoding rows of a large model: each group would re-read every weight
    public void A_step_stays_one_forward_where_groups_would_not_pay(int[] rows, int threads, long weightBytes) =>
        Assert.Null(StepGroups.Plan(rows, threads, weightBytes));

    [Fact]
    public void Groups_side_by_side_give_each_sequence_the_logits_and_cache_of_one_forward()
    {
        var model = fx.Model;
        using var scope = NewDisposeScope();
        // Four sequences with histories: two decode one token, two prefill chunks; one chunk wants no logits.
        int[] history = [5, 17, 2, 9], rows = [1, 1, 6, 3];
        bool[] output = [true, true, false, true];
        AttentionCache[] Caches()
        {
            var caches = history.Select(_ => new AttentionCache(model.Config, 64, ScalarType.Float32)).ToArray();
            for (int s = 0; s < history.Length; s++)
            {
                var pos = Range(0, history[s]);
                model.Hidden(tensor(Tokens(s, history[s]).Select(t => (long)t).ToArray(), [1, history[s]]),
                    model.Step(pos, AttentionMasks.CausalOverCache(pos, history[s]), caches[s]));
            }
            return caches;
        }
        Tensor? Forward(AttentionCache[] caches, int first, int count, DecodeRows decode)
        {
            var positions = new List<long>();
            var ids = new List<long>();
            var parts = new List<SequenceRows>();
            for (int s = first; s < first + count; s++)
            {
                var pos = Range(history[s], rows[s]);
                parts.Add(new SequenceRows(positions.Count, rows[s], tensor(pos), pos[^1], AttentionMasks.CausalOverCache(pos, history[s] + rows[s]), caches[s], output[s]));
                positions.AddRange(pos);
                ids.AddRange(Tokens(10 + s, rows[s]).Select(t => (long)t));
            }
            var hidden = model.Hidden(tensor(ids.ToArray(), [1, ids.Count]), model.BatchStep([.. positions], parts, decode), lastOnly: true);
            return parts.Any(p => p.Output) ? model.Logits(hidden, decode) : null;
        }

        var joint = Caches();
        var grouped = Caches();
        var decode = new DecodeRows(2, Int8: false); // the two decoding rows come first
        var expected = Forward(joint, 0, rows.Length, decode)!;
        long before = StepGroups.StepsOnThisThread;
        var actual = StepGroups.Run([0, 2], rows.Length, decode, (first, count, own) => Forward(grouped, first, count, own))!;
        Assert.Equal(before + 1, StepGroups.StepsOnThisThread);

        Assert.Equal(expected.shape, actual.shape); // [1, 3, vocab]: sequences 0, 1 and 3
        Assert.True(RelativeError(actual, expected) < 1e-5, $"logits differ by {RelativeError(actual, expected):E2}");
        Assert.True(RelativeError(actual[0, 0], expected[0, 2]) > 1e-3, "sequences must differ, else the test proves nothing");
        for (int s = 0; s < history.Length; s++) CacheAssert.Equal(joint[s], grouped[s], $"sequence {s}");
        foreach (var c in joint.Concat(grouped)) c.Dispose();
    }

    [Fact]
    public void A_group_that_throws_fails_the_step_after_every_group_has_finished()
    {
        int finished = 0;
        var error = Assert.Throws<InvalidOperationException>(() => StepGroups.Run([0, 1], 2, default, (first, _, _) =>
        {
            if (first == 0) throw new InvalidOperationException("group 0 failed");
            Thread.Sleep(50);
            Interlocked.Increment(ref finished);
            return ones(1, 1, 4);
        }));
        Assert.Equal("group 0 failed", error.Message);
        Assert.Equal(1, finished);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Documents_encoded_through_the_scheduler_as_groups_equal_each_document_encoded_alone(bool groups)
    {
        var model = fx.Model;
        var scheduler = new BatchScheduler(model, new KvLinkOptions { DType = ComputeDType.Float32, GroupSteps = groups }, null, () => { });
        int[][] documents = [Tokens(1, 12), Tokens(2, 14), Tokens(3, 11), Tokens(4, 13)];
        var encodes = documents.Select(d => new EncodeSequence(model, d, background: false)).ToArray();
        foreach (var e in encodes) scheduler.Submit(e);

        long before = StepGroups.StepsOnThisThread;
        scheduler.Step(); // every document fits the default budget: all four in one step
        Assert.Equal(before + (groups && StepGroups.Available(model.Device) ? 1 : 0), StepGroups.StepsOnThisThread);

        for (int i = 0; i < documents.Length; i++)
        {
            var (keys, values) = await encodes[i].Task;
            var (expectedKeys, expectedValues) = DocumentEncoder.Encode(model, documents[i]);
            Assert.True(RelativeError(keys, expectedKeys) < 1e-5 && RelativeError(values, expectedValues) < 1e-5, $"document {i} differs from the document encoded alone");
            foreach (var t in new[] { keys, values, expectedKeys, expectedValues }) t.Dispose();
        }
        Assert.Equal(0, scheduler.Outstanding);
    }

    [Fact]
    public async Task Sequences_admitted_together_start_side_by_side_and_a_failed_start_fails_only_its_own()
    {
        var model = fx.Model;
        var scheduler = new BatchScheduler(model, new KvLinkOptions { DType = ComputeDType.Float32 }, null, () => { });
        var sequences = Enumerable.Range(0, 4).Select(i => new StartProbe(model, anyThread: true, fail: i == 1)).Append(new StartProbe(model, anyThread: false, fail: false)).ToArray();
        foreach (var s in sequences) scheduler.Submit(s);
        int caller = Environment.CurrentManagedThreadId;
        scheduler.Step(); // admits all five, starts them, and runs the four that started in one step

        var threads = sequences[..4].Select(s => s.StartedOn).Distinct().ToArray();
        if (StepGroups.Available(model.Device)) Assert.True(threads.Length > 1 && threads.Contains(caller), "the starts did not run side by side on the team");
        else Assert.Equal([caller], threads);
        Assert.Equal(caller, sequences[4].StartedOn); // one that must start on the model thread does
        await Assert.ThrowsAsync<InvalidOperationException>(() => sequences[1].Task);
        foreach (var s in sequences.Where((_, i) => i != 1)) await s.Task;
        Assert.Equal(0, scheduler.Outstanding);
    }

    /// <summary>A two-token encode that records the thread its start ran on, and may fail there.</summary>
    private sealed class StartProbe(LlamaForCausalLM model, bool anyThread, bool fail) : ScheduledSequence(CancellationToken.None, background: false)
    {
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Task => _done.Task;

        public int StartedOn { get; private set; }

        public override bool StartsOnAnyThread => anyThread;

        public override int CacheTokens => 2;

        protected override bool WantsLogits => false;

        public override void Start()
        {
            StartedOn = Environment.CurrentManagedThreadId;
            if (fail) throw new InvalidOperationException("this start failed");
            Cache = AttentionCache.Rent(model, 2);
            SetPrompt([0, 1], [7, 9]);
        }

        public override bool Advance(Tensor? logits) => PrefillRemaining == 0;

        public override void Complete() => _done.TrySetResult();

        public override void Fail(Exception error) => _done.TrySetException(error);
    }
}
