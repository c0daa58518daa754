using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Linking;
using static TorchSharp.torch;
using static KVLink.Core.Tests.Scheduling.CacheAssert;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>
/// A batched forward that throws fails only the sequences whose own forward fails: the scheduler reruns each sequence
/// of the step alone, and the keys and values the failed attempt wrote for the others are overwritten by the rerun.
/// Driven step by step on the test thread, so the step that fails is known.
/// </summary>
public sealed class FailureIsolationTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private static int[] Tokens(int seed, int count) => [.. Enumerable.Range(0, count).Select(i => 3 + (seed * 37 + i * 11) % 200)];

    [Theory]
    [InlineData(false)] // its chunk reaches beyond its cache: it throws at layer 0, after the encodes before it wrote that layer
    [InlineData(true)]  // its cache lacks the last layer: it throws there, after every encode wrote layer 0 and those before it the rest
    public async Task The_other_encodes_of_a_failed_batched_step_are_rerun_alone_and_equal_each_encoded_alone(bool lastLayer)
    {
        var model = fx.Model;
        var scheduler = new BatchScheduler(model, new KvLinkOptions { DType = ComputeDType.Float32 }, null, () => { });
        int[][] documents = [Tokens(1, 5), Tokens(2, 17), Tokens(3, 9), Tokens(4, 30)];
        var encodes = documents.Select(d => new EncodeSequence(model, d, background: false)).ToArray();
        var broken = lastLayer
            ? new BrokenSequence(model, tokens: 12, capacity: 12, layers: model.Config.NumHiddenLayers - 1)
            : new BrokenSequence(model, tokens: 12, capacity: 6);
        // In the middle of the step: the encodes before it went further through the failed forward than those after it.
        scheduler.Submit(encodes[0]);
        scheduler.Submit(encodes[1]);
        scheduler.Submit(broken);
        scheduler.Submit(encodes[2]);
        scheduler.Submit(encodes[3]);

        scheduler.Step(); // every prompt fits the default budget: all five in one forward

        Assert.True(broken.Task.IsFaulted, "the broken sequence did not fail");
        Assert.Equal(0, broken.StepsRun);
        for (int i = 0; i < encodes.Length; i++)
        {
            Assert.True(encodes[i].Task.IsCompletedSuccessfully, $"encode {i} did not complete in the step");
            var (keys, values) = await encodes[i].Task;
            var (expectedKeys, expectedValues) = DocumentEncoder.Encode(model, documents[i]);
            Assert.True(RelativeError(keys, expectedKeys) < 1e-5 && RelativeError(values, expectedValues) < 1e-5, $"encode {i} differs from the document encoded alone");
            foreach (var t in new[] { keys, values, expectedKeys, expectedValues }) t.Dispose();
        }
        Assert.Equal(0, scheduler.Running);
        Assert.Equal(0, scheduler.Outstanding);
        Assert.Equal(0, scheduler.LiveCacheBytes);
    }

    [Fact]
    public async Task A_failed_step_of_one_sequence_fails_it_and_the_scheduler_goes_on()
    {
        var model = fx.Model;
        var scheduler = new BatchScheduler(model, new KvLinkOptions { DType = ComputeDType.Float32 }, null, () => { });
        var broken = new BrokenSequence(model, tokens: 4, capacity: 2);
        scheduler.Submit(broken);
        scheduler.Step();
        Assert.IsType<InvalidOperationException>(broken.Task.Exception?.InnerException);

        var document = Tokens(5, 8);
        var encode = new EncodeSequence(model, document, background: false);
        scheduler.Submit(encode);
        scheduler.Step();
        var (keys, _) = await encode.Task;
        var (expected, _) = DocumentEncoder.Encode(model, document);
        Assert.True(RelativeError(keys, expected) < 1e-5);
        Assert.Equal(0, scheduler.Outstanding);
    }
}
