using static TorchSharp.torch;

namespace KVLink.Training;

/// <summary>
/// Hyper-parameters of KVLink fine-tuning. Defaults follow the method (AdamW lr 5e-6, no weight decay, clip 1.0,
/// linear warm-up then cosine decay); betas default to 0.9/0.95.
/// </summary>
public sealed record KvLinkTrainingOptions
{
    /// <summary>Peak learning rate (after warm-up).</summary>
    public double LearningRate { get; init; } = 5e-6;

    /// <summary>Learning rate at the end of the cosine decay, as a fraction of <see cref="LearningRate"/>.</summary>
    public double MinLearningRateRatio { get; init; }

    /// <summary>AdamW beta1.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW beta2 (0.95; use 0.999 for PyTorch's default).</summary>
    public double Beta2 { get; init; } = 0.95;

    /// <summary>AdamW epsilon.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>AdamW decoupled weight decay (none in the method).</summary>
    public double WeightDecay { get; init; }

    /// <summary>Optimizer steps of linear warm-up from 0 to <see cref="LearningRate"/>.</summary>
    public int WarmupSteps { get; init; } = 600;

    /// <summary>Total optimizer steps (the cosine decay ends here).</summary>
    public int TotalSteps { get; init; } = 6000;

    /// <summary>Gradient-norm clip (0 or less disables clipping).</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>Examples per optimizer step (the global batch); the loss is averaged over all their target tokens.</summary>
    public int ExamplesPerStep { get; init; } = 64;

    /// <summary>
    /// Examples per forward/backward (micro-batch), padded to the longest; the step's gradients accumulate over
    /// ceil(<see cref="ExamplesPerStep"/> / MicroBatchSize) or more micro-batches. 1 is one example per pass.
    /// </summary>
    public int MicroBatchSize { get; init; } = 8;

    /// <summary>
    /// Most padded tokens (examples x longest) in one micro-batch, so long examples go in smaller micro-batches and
    /// memory stays bounded whatever the lengths; 0 = no limit. An example longer than this goes alone.
    /// </summary>
    public int MicroBatchTokens { get; init; } = 16384;

    /// <summary>
    /// Compute (and parameter) dtype: Float32 or BFloat16. The default, <see cref="TrainingComputeType.Auto"/>, is BFloat16
    /// where the CPU multiplies bf16 natively and Float32 elsewhere; on a GPU set BFloat16 (the method's precision).
    /// </summary>
    public ScalarType ComputeType { get; init; } = TrainingComputeType.Auto;

    /// <summary>Seed of the data-mixture generator (and of TorchSharp's generator).</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>Share of QA examples trained blocked (segment mask and link tokens) rather than with full attention.</summary>
    public double BlockedFraction { get; init; } = 1.0;

    /// <summary>Share of examples that are plain text.</summary>
    public double TextFraction { get; init; }

    /// <summary>Link tokens per document (K).</summary>
    public int LinkTokens { get; init; } = 5;

    /// <summary>Longest training sequence.</summary>
    public int MaxLength { get; init; } = 4096;

    /// <summary>Throws when a value is out of range.</summary>
    public void Validate()
    {
        if (!(LearningRate > 0)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "Must be positive.");
        if (MinLearningRateRatio is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(MinLearningRateRatio), MinLearningRateRatio, "Must be in [0, 1].");
        if (Beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "Must be in [0, 1).");
        if (Beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "Must be in [0, 1).");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "Must be >= 0.");
        if (TotalSteps < 1) throw new ArgumentOutOfRangeException(nameof(TotalSteps), TotalSteps, "Must be >= 1.");
        if (ExamplesPerStep < 1) throw new ArgumentOutOfRangeException(nameof(ExamplesPerStep), ExamplesPerStep, "Must be >= 1.");
        if (MicroBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(MicroBatchSize), MicroBatchSize, "Must be >= 1.");
        if (MicroBatchTokens < 0) throw new ArgumentOutOfRangeException(nameof(MicroBatchTokens), MicroBatchTokens, "Must be >= 0 (0 = no limit).");
        if (ComputeType is not (ScalarType.Float32 or ScalarType.BFloat16))
            throw new ArgumentOutOfRangeException(nameof(ComputeType), ComputeType, "Training computes in Float32 or BFloat16.");
        if (BlockedFraction is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(BlockedFraction), BlockedFraction, "Must be in [0, 1].");
        if (TextFraction is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(TextFraction), TextFraction, "Must be in [0, 1].");
        if (LinkTokens < 0) throw new ArgumentOutOfRangeException(nameof(LinkTokens), LinkTokens, "Must be >= 0.");
    }
}
