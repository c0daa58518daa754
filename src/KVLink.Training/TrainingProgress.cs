namespace KVLink.Training;

/// <summary>A progress report after one optimizer step.</summary>
/// <param name="Step">Optimizer steps completed so far.</param>
/// <param name="TotalSteps">Steps the run was asked to reach.</param>
/// <param name="Loss">Mean cross-entropy per target token of this step.</param>
/// <param name="LearningRate">Learning rate used by this step.</param>
/// <param name="GradientNorm">Gradient norm before clipping.</param>
/// <param name="TokensPerSecond">Tokens (forward) per second since the run began.</param>
/// <param name="Elapsed">Time since the run began.</param>
/// <param name="EstimatedRemaining">Estimated time to reach <paramref name="TotalSteps"/>.</param>
/// <param name="Tokens">Tokens (forward, padding not counted) trained since the run began.</param>
public sealed record TrainingProgress(int Step, int TotalSteps, double Loss, double LearningRate, double GradientNorm,
    double TokensPerSecond, TimeSpan Elapsed, TimeSpan EstimatedRemaining, long Tokens = 0);
