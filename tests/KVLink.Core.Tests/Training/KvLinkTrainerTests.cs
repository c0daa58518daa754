using KVLink.Core.Model;
using KVLink.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Training;

public sealed class KvLinkTrainerTests(TrainingFixture fixture) : IClassFixture<TrainingFixture>
{
    [Fact]
    public void AFewStepsLowerTheLossOnAFixedBatch()
    {
        using var model = fixture.LoadModel();
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options);
        var builder = fixture.Builder();
        var batch = new[]
        {
            builder.FromQa(TrainingFixture.Qa[0], TrainingAttention.Blocked),
            builder.FromQa(TrainingFixture.Qa[1], TrainingAttention.Causal),
        };
        double before = batch.Sum(e => TrainingLoss.Mean(model, e));
        var losses = Enumerable.Range(0, 8).Select(_ => trainer.TrainStep(batch).Loss).ToList();
        double after = batch.Sum(e => TrainingLoss.Mean(model, e));
        Assert.Equal(8, trainer.Step);
        Assert.True(after < 0.7 * before, $"loss {before} -> {after} ({string.Join(", ", losses)})");
        Assert.True(losses[^1] < losses[0]);
    }

    [Fact]
    public void AllParametersTrainAndTiedEmbeddingsAreUpdatedOnce()
    {
        using var model = fixture.LoadModel();
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options);
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
        // Tied: embed_tokens and lm_head are one parameter, handed to the optimizer once.
        Assert.Equal(trainer.Parameters.Count, trainer.Parameters.Select(p => p.Handle).Distinct().Count());
        Assert.Equal(model.parameters().Select(p => p.Handle).Distinct().Count(), trainer.Parameters.Count);
    }

    [Fact]
    public void SegmentMaskBlocksLossAndGradientFromOtherDocuments()
    {
        using var model = fixture.LoadModel();
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options); // makes parameters trainable
        var builder = fixture.Builder();
        var sample = TrainingFixture.Qa[0];
        var layout = builder.Layout(sample);
        var blocked = builder.FromQa(sample, TrainingAttention.Blocked);
        var doc1 = layout.Documents[0];
        var doc2 = layout.Documents[1];

        // Targets inside document 2 (predicted from document-2 positions) cannot see document 1 at all.
        var targets = Enumerable.Range(0, blocked.Length).Select(i => i > doc2.Start && i < doc2.Start + doc2.Length).ToArray();
        var original = new TrainingExample(blocked.Tokens, targets, TrainingAttention.Blocked, blocked.Segments);
        var tokens = blocked.Tokens.ToArray();
        int perturbed = doc1.Start + 3;
        Assert.DoesNotContain(Enumerable.Range(0, blocked.Length).Where(i => targets[i]), i => original.Visible(i - 1, perturbed));
        tokens[perturbed] = tokens[perturbed] == 'x' ? 'y' : 'x';
        var changed = new TrainingExample(tokens, targets, TrainingAttention.Blocked, blocked.Segments);

        var (lossA, gradA) = LossAndGradient(trainer, original);
        var (lossB, gradB) = LossAndGradient(trainer, changed);
        Assert.Equal(lossA, lossB, 6);
        Assert.True(MaxAbsDiff(gradA, gradB) < 1e-6, $"gradients differ by {MaxAbsDiff(gradA, gradB)}");

        // Sanity: the same perturbation under full attention does change the loss.
        var fullA = new TrainingExample(original.Tokens, targets, TrainingAttention.Causal);
        var fullB = new TrainingExample(changed.Tokens, targets, TrainingAttention.Causal);
        Assert.NotEqual(TrainingLoss.Mean(model, fullA), TrainingLoss.Mean(model, fullB), 6);
    }

    [Fact]
    public void LossCountsTargetPositionsOnly()
    {
        using var model = fixture.LoadModel();
        var example = fixture.Builder().FromQa(TrainingFixture.Qa[2], TrainingAttention.Blocked);
        using var _ = no_grad();
        long[] positions = [.. Enumerable.Range(0, example.Length).Select(i => (long)i)];
        using var mask = example.Mask();
        var step = model.Step(positions, mask, null);
        using var tokens = tensor(example.Tokens.Select(i => (long)i).ToArray(), [1, example.Length]);
        using var logits = model.Forward(tokens, step);
        using var logp = logits[0].log_softmax(-1);
        double expected = 0;
        for (int i = 1; i < example.Length; i++)
            if (example.Targets[i]) expected -= logp[i - 1, example.Tokens[i]].item<float>();
        using var sum = TrainingLoss.Sum(model, example);
        Assert.Equal(expected, sum.item<float>(), 3);

        // Un-targeting a position removes exactly its term; a non-target label contributes nothing.
        int first = Enumerable.Range(0, example.Length).First(i => example.Targets[i]);
        var fewer = example.Targets.ToArray();
        fewer[first] = false;
        using var sumFewer = TrainingLoss.Sum(model, new TrainingExample(example.Tokens, fewer, example.Attention, example.Segments));
        double term = -logp[first - 1, example.Tokens[first]].item<float>();
        Assert.Equal(sum.item<float>() - term, sumFewer.item<float>(), 3);
    }

    [Fact]
    public void SavedCheckpointLoadsWithIdenticalLogits()
    {
        using var dir = new TempFolder();
        using var model = fixture.LoadModel();
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options, fixture.Folder);
        var mixture = new TrainingMixture(fixture.Builder(), TrainingFixture.Qa, TrainingFixture.Text, 0.5, 0.25);
        var reports = new List<TrainingProgress>();
        trainer.Train(mixture, 2, new SyncProgress(reports));
        Assert.Equal([1, 2], reports.Select(r => r.Step));
        Assert.All(reports, r => Assert.True(r.TokensPerSecond > 0 && double.IsFinite(r.Loss)));
        trainer.SaveCheckpoint(dir.Path);

        Assert.True(File.Exists(dir.File("tokenizer.json")));
        Assert.True(File.Exists(dir.File(KvLinkTrainer.StateFileName)));
        using var loaded = LlamaCheckpoint.Load(dir.Path, ScalarType.Float32);
        using var tokens = tensor(new long[] { 256, 72, 105, 33, 10, 300 }, [1, 6]);
        using var _ = no_grad();
        using var a = model.Forward(tokens);
        using var b = loaded.Forward(tokens);
        Assert.True(a.allclose(b, rtol: 0, atol: 0), "logits differ after save/load");
    }

    [Theory]
    [InlineData(2, 1)] // one example per forward/backward
    [InlineData(2, 8)] // both examples in one padded micro-batch
    [InlineData(5, 2)] // padded micro-batches of two, accumulated over three passes
    public void ResumeContinuesExactly(int examplesPerStep, int microBatchSize)
    {
        using var dir = new TempFolder();
        var mixture = new TrainingMixture(fixture.Builder(), TrainingFixture.Qa, TrainingFixture.Text, 0.5, 0.25);
        var options = TrainingFixture.Options with { ExamplesPerStep = examplesPerStep, MicroBatchSize = microBatchSize, WarmupSteps = 1, TotalSteps = 4 };

        using var straightModel = fixture.LoadModel();
        using var straight = new KvLinkTrainer(straightModel, options, fixture.Folder);
        straight.Train(mixture, 4);

        using (var firstModel = fixture.LoadModel())
        using (var first = new KvLinkTrainer(firstModel, options, fixture.Folder))
        {
            first.Train(mixture, 2);
            first.SaveCheckpoint(dir.Path);
        }
        using var resumed = KvLinkTrainer.Resume(dir.Path);
        Assert.Equal(2, resumed.Step);
        Assert.Equal(options, resumed.Options);
        resumed.Train(mixture, 4);
        Assert.Equal(straight.Random.State, resumed.Random.State);

        var expected = straightModel.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in resumed.Model.named_parameters())
        {
            using var diff = (p - expected[name]).abs().max();
            Assert.True(diff.item<float>() < 1e-6f, $"{name} differs by {diff.item<float>()}");
        }
        var probe = fixture.Builder().FromQa(TrainingFixture.Qa[1], TrainingAttention.Blocked);
        Assert.Equal(TrainingLoss.Mean(straightModel, probe), TrainingLoss.Mean(resumed.Model, probe), 5);
        resumed.Model.Dispose();
    }

    [Fact]
    public void ResumeRejectsAFolderWithoutTrainerState()
    {
        var e = Assert.Throws<FileNotFoundException>(() => KvLinkTrainer.Resume(fixture.Folder));
        Assert.Contains(KvLinkTrainer.StateFileName, e.Message);
    }

    [Fact]
    public void ModelDtypeMustMatchComputeType()
    {
        using var model = fixture.LoadModel();
        Assert.Throws<ArgumentException>(() => new KvLinkTrainer(model, TrainingFixture.Options with { ComputeType = ScalarType.BFloat16 }));
    }

    [Fact]
    public void BFloat16TrainingRunsAndLowersTheLoss()
    {
        using var model = LlamaCheckpoint.Load(fixture.Folder, ScalarType.BFloat16);
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options with { ComputeType = ScalarType.BFloat16, LearningRate = 5e-3 });
        var batch = new[] { fixture.Builder().FromQa(TrainingFixture.Qa[0], TrainingAttention.Blocked) };
        double before = TrainingLoss.Mean(model, batch[0]);
        for (int i = 0; i < 6; i++) trainer.TrainStep(batch);
        double after = TrainingLoss.Mean(model, batch[0]);
        Assert.True(after < before, $"{before} -> {after}");
    }

    [Fact]
    public void OptimizerUsesTheScheduledLearningRate()
    {
        using var model = fixture.LoadModel();
        var before = model.parameters().Select(p => p.detach().clone()).ToList();
        // Warm-up over 1000 steps: the first update runs at 1e-2 / 1000, and Adam's first step moves each weight by about lr.
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options with { LearningRate = 1e-2, WarmupSteps = 1000, TotalSteps = 2000 });
        var (_, lr, _) = trainer.TrainStep([fixture.Builder().FromQa(TrainingFixture.Qa[2], TrainingAttention.Blocked)]);
        Assert.Equal(1e-5, lr, 12);
        double maxChange = model.parameters().Zip(before, (p, b) => (p - b).abs().max().item<float>()).Max();
        Assert.InRange(maxChange, 1e-7, 2e-5);
    }

    [Fact]
    public void StepLossIsTheMeanOverAllTargetTokensOfTheBatch()
    {
        using var model = fixture.LoadModel();
        using var trainer = new KvLinkTrainer(model, TrainingFixture.Options);
        var builder = fixture.Builder();
        var a = builder.FromQa(TrainingFixture.Qa[0], TrainingAttention.Blocked);
        var b = builder.FromText(TrainingFixture.Text[0]);
        double sumA, sumB;
        using (no_grad())
        {
            using var la = TrainingLoss.Sum(model, a);
            using var lb = TrainingLoss.Sum(model, b);
            (sumA, sumB) = (la.item<float>(), lb.item<float>());
        }
        var (loss, _, norm) = trainer.TrainStep([a, b]);
        Assert.Equal((sumA + sumB) / (a.TargetCount + b.TargetCount), loss, 4);
        Assert.True(norm > 0 && double.IsFinite(norm));
    }

    private static (double Loss, float[] Gradient) LossAndGradient(KvLinkTrainer trainer, TrainingExample example)
    {
        foreach (var p in trainer.Parameters) p.grad?.zero_();
        using var loss = TrainingLoss.Sum(trainer.Model, example);
        loss.backward();
        var grad = trainer.Parameters.SelectMany(p => p.grad is null ? [] : p.grad.to(ScalarType.Float32).data<float>().ToArray()).ToArray();
        foreach (var p in trainer.Parameters) p.grad?.zero_();
        return (loss.item<float>(), grad);
    }

    private static double MaxAbsDiff(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    private sealed class SyncProgress(List<TrainingProgress> reports) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => reports.Add(value);
    }
}
