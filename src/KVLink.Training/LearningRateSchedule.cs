namespace KVLink.Training;

/// <summary>Linear warm-up to the peak rate, then cosine decay to <c>MinLearningRateRatio</c> x peak at <c>TotalSteps</c>.</summary>
public static class LearningRateSchedule
{
    /// <summary>The learning rate for optimizer step <paramref name="step"/> (0-based: the first update uses step 0).</summary>
    public static double At(int step, KvLinkTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        double peak = options.LearningRate, floor = peak * options.MinLearningRateRatio;
        if (step < options.WarmupSteps) return peak * (step + 1) / options.WarmupSteps;
        int decaySteps = Math.Max(1, options.TotalSteps - options.WarmupSteps);
        double progress = Math.Clamp((double)(step - options.WarmupSteps) / decaySteps, 0, 1);
        return floor + (peak - floor) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
