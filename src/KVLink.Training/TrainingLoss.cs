using KVLink.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Training;

/// <summary>Cross-entropy on an example's target tokens only, under its attention mask, at positions 0..T-1.</summary>
internal static class TrainingLoss
{
    /// <summary>
    /// The summed cross-entropy (fp32 scalar) of the example's target tokens, each predicted from the logits of the
    /// position before it. Divide by the number of targets for the mean. Differentiable when the model's parameters require grad.
    /// </summary>
    public static Tensor Sum(LlamaForCausalLM model, TrainingExample example)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(example);
        using var scope = NewDisposeScope();
        int t = example.Length;
        long[] positions = [.. Enumerable.Range(0, t).Select(i => (long)i)];
        var step = model.Step(positions, example.Mask(model.Device), null);
        var tokens = tensor(example.Tokens.Select(i => (long)i).ToArray(), [1, t], device: model.Device);
        var logits = model.Forward(tokens, step)[0].narrow(0, 0, t - 1).to(ScalarType.Float32); // [T-1, V]
        var labels = new long[t - 1];
        for (int i = 1; i < t; i++) labels[i - 1] = example.Targets[i] ? example.Tokens[i] : -100;
        var target = tensor(labels, device: model.Device);
        var loss = nn.functional.cross_entropy(logits, target, ignore_index: -100, reduction: nn.Reduction.Sum);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>The mean cross-entropy per target token, without gradients.</summary>
    public static double Mean(LlamaForCausalLM model, TrainingExample example)
    {
        using var _ = no_grad();
        using var sum = Sum(model, example);
        return sum.item<float>() / Math.Max(1, example.TargetCount);
    }
}
