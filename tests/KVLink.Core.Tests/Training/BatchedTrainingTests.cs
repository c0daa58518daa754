using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Training;

/// <summary>
/// Batched training: several examples in one padded forward/backward, each under its own mask, give the same loss and
/// gradients as one pass per example (float32), and the trainer's micro-batch size changes nothing but speed.
/// </summary>
public sealed class BatchedTrainingTests(TrainingFixture fixture) : IClassFixture<TrainingFixture>
{
    /// <summary>Mixed K (0, 1, 2 link tokens), blocked and full-attention QA, plain text: every length differs.</summary>
    private List<TrainingExample> MixedExamples()
    {
        var builder = fixture.Builder();
        var examples = new List<TrainingExample>
        {
            builder.FromQa(TrainingFixture.Qa[0], TrainingAttention.Blocked, 0),
            builder.FromQa(TrainingFixture.Qa[1], TrainingAttention.Blocked, 2),
            builder.FromQa(TrainingFixture.Qa[1], TrainingAttention.Causal),
            builder.FromText(TrainingFixture.Text[1]),
            builder.FromQa(TrainingFixture.Qa[2], TrainingAttention.Blocked, 1),
            builder.FromQa(TrainingFixture.Qa[0], TrainingAttention.Causal),
        };
        Assert.True(examples.Select(e => e.Length).Distinct().Count() >= 4, "the examples should differ in length");
        return examples;
    }

    [Fact]
    public void PaddedBatchGivesTheLossAndGradientsOfOnePassPerExample()
    {
        using var model = fixture.LoadModel();
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options); // makes the parameters trainable
        var examples = MixedExamples();

        double expectedLoss = 0;
        foreach (var e in examples)
        {
            using var sum = TrainingLoss.Sum(model, e);
            sum.backward();
            expectedLoss += sum.item<float>();
        }
        var expected = Gradients(trainer);

        // A padded row attends to itself only: a fully masked row would make NaN, which would reach every weight's
        // gradient through the attention backward even though the row has no label.
        var batch = new TrainingBatch(examples);
        Assert.Equal(examples.Max(e => e.Length), batch.Length);
        Assert.Equal(examples.Sum(e => e.TargetCount), batch.Labels.Length);
        using (var sum = batch.LossSum(model))
        {
            sum.backward();
            Assert.Equal(expectedLoss, sum.item<float>(), expectedLoss * 1e-5);
        }
        var actual = Gradients(trainer);
        AssertClose(expected, actual);
    }

    [Fact]
    public void MicroBatchSizeChangesNeitherTheStepLossNorItsGradients()
    {
        var examples = MixedExamples();
        // No clipping, so the gradients left after the step are the raw accumulated ones.
        var options = TrainingFixture.Options with { MaxGradNorm = 0 };
        var results = new List<(double Loss, float[][] Gradients)>();
        foreach (var (rows, tokens) in new[] { (1, 0), (4, 0), (8, 0), (8, 120) })
        {
            using var model = fixture.LoadModel();
            using var trainer = new KvLinkTrainer(model, options with { MicroBatchSize = rows, MicroBatchTokens = tokens });
            var (loss, _, _) = trainer.TrainStep(examples);
            results.Add((loss, Gradients(trainer)));
        }
        foreach (var (loss, gradients) in results.Skip(1))
        {
            Assert.Equal(results[0].Loss, loss, results[0].Loss * 1e-5);
            AssertClose(results[0].Gradients, gradients);
        }
    }

    [Fact]
    public void PlanSortsByLengthAndRespectsBothLimits()
    {
        var examples = MixedExamples();
        var plan = TrainingBatch.Plan(examples, maxRows: 4, maxTokens: 0);
        Assert.Equal([4, 2], plan.Select(m => m.Length));
        Assert.Equal(examples.OrderBy(e => e.Length), plan.SelectMany(m => m));

        int longest = examples.Max(e => e.Length);
        var limited = TrainingBatch.Plan(examples, maxRows: 8, maxTokens: 2 * longest);
        Assert.All(limited, m => Assert.True(m.Length == 1 || m.Length * m.Max(e => e.Length) <= 2 * longest));
        Assert.Equal(examples.Count, limited.Sum(m => m.Length));
        Assert.Equal(examples.Count, TrainingBatch.Plan(examples, 8, maxTokens: 1).Count); // each alone when none fits

        // Deterministic: the same examples, the same micro-batches.
        Assert.Equal(limited.SelectMany(m => m), TrainingBatch.Plan(examples, 8, 2 * longest).SelectMany(m => m));
    }

    [Fact]
    public void MicroBatchOptionsAreValidated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => (TrainingFixture.Options with { MicroBatchSize = 0 }).Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => (TrainingFixture.Options with { MicroBatchTokens = -1 }).Validate());
    }

    private static float[][] Gradients(KvLinkTrainer trainer)
    {
        var grads = trainer.Parameters.Select(p => p.grad is null ? [] : p.grad.to(ScalarType.Float32).data<float>().ToArray()).ToArray();
        foreach (var p in trainer.Parameters) p.grad?.zero_();
        return grads;
    }

    private static void AssertClose(float[][] expected, float[][] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.SelectMany(g => g).Max(Math.Abs);
        Assert.True(scale > 0, "no gradient");
        for (int p = 0; p < expected.Length; p++)
        {
            Assert.Equal(expected[p].Length, actual[p].Length);
            for (int i = 0; i < expected[p].Length; i++)
            {
                double diff = Math.Abs(expected[p][i] - actual[p][i]);
                Assert.True(float.IsFinite(actual[p][i]) && diff <= 1e-5 * Math.Max(1, scale),
                    $"parameter {p} element {i}: {expected[p][i]} vs {actual[p][i]} (max |g| {scale})");
            }
        }
    }
}
