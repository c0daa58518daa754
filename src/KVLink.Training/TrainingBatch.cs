using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Training;

/// <summary>
/// Several training examples as one padded forward: tokens [B, T] (T = the longest example), each example's own
/// attention rule as one boolean mask [B, T, T], positions 0..T-1 shared by every row (each example starts at 0, as
/// alone), and the loss labels of its target tokens only.
/// </summary>
/// <remarks>
/// Padding never changes an example's numbers: its real queries see only its real keys (the padded keys sit after
/// them, outside every causal or segment rule), and a padded query attends to itself alone, so its softmax row is
/// finite (a fully masked row would be NaN, and NaN times a zero gradient is still NaN). Padded rows carry no label.
/// </remarks>
internal sealed class TrainingBatch
{
    /// <summary>Label of a position that is not a loss target (cross-entropy's ignore index).</summary>
    public const long IgnoreLabel = -100;

    /// <summary>Pads <paramref name="examples"/> (at least one) into one batch.</summary>
    public TrainingBatch(IReadOnlyList<TrainingExample> examples)
    {
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("A batch needs at least one example.", nameof(examples));
        Examples = examples;
        Rows = examples.Count;
        Length = examples.Max(e => e.Length);
        int t = Length;
        Tokens = new long[Rows * t];
        Mask = new bool[Rows * t * t];
        var labels = new List<(long Row, long Label)>();
        for (int b = 0; b < Rows; b++)
        {
            var e = examples[b];
            int n = e.Length;
            long rowBase = (long)b * t;
            for (int i = 0; i < n; i++) Tokens[rowBase + i] = e.Tokens[i];
            for (int q = 0; q < t; q++)
            {
                long maskRow = (rowBase + q) * t;
                if (q >= n) Mask[maskRow + q] = true; // padding: itself only
                else
                    for (int k = 0; k <= q; k++) Mask[maskRow + k] = e.Visible(q, k);
            }
            // Token i (a target) is predicted from the hidden state at position i - 1.
            for (int i = 1; i < n; i++)
                if (e.Targets[i]) labels.Add((rowBase + i - 1, e.Tokens[i]));
        }
        LabelRows = [.. labels.Select(l => l.Row)];
        Labels = [.. labels.Select(l => l.Label)];
    }

    /// <summary>The examples, in row order.</summary>
    public IReadOnlyList<TrainingExample> Examples { get; }

    /// <summary>Number of rows (examples), B.</summary>
    public int Rows { get; }

    /// <summary>Padded length, T (the longest example).</summary>
    public int Length { get; }

    /// <summary>Token ids, row-major [B, T]; padding is token 0 (never a label, never seen by a real token).</summary>
    public long[] Tokens { get; }

    /// <summary>Attention mask, row-major [B, T, T] (true = may attend).</summary>
    public bool[] Mask { get; }

    /// <summary>Flat indices (b * T + position) of the hidden states that predict a target token, in row order.</summary>
    public long[] LabelRows { get; }

    /// <summary>The target token each of <see cref="LabelRows"/> predicts.</summary>
    public long[] Labels { get; }

    /// <summary>
    /// The summed cross-entropy (fp32 scalar) of every target token of the batch: the sum of each example's
    /// <see cref="TrainingLoss.Sum(LlamaForCausalLM, TrainingExample)"/>. Only the hidden states that predict a target
    /// go through the vocabulary head (answer-only loss needs few of them). Differentiable when the parameters require grad.
    /// </summary>
    public Tensor LossSum(LlamaForCausalLM model)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var scope = NewDisposeScope();
        if (Labels.Length == 0) return zeros([], ScalarType.Float32, model.Device).MoveToOuterDisposeScope();
        long[] positions = [.. Enumerable.Range(0, Length).Select(i => (long)i)];
        var step = model.Step(positions, tensor(Mask, [Rows, Length, Length], device: model.Device), null);
        var tokens = tensor(Tokens, [Rows, Length], device: model.Device);
        var hidden = model.Hidden(tokens, step);                                    // [B, T, hidden]
        var picked = hidden.reshape(Rows * (long)Length, hidden.shape[2]).index_select(0, tensor(LabelRows, device: model.Device));
        var logits = model.Logits(picked).to(ScalarType.Float32);                  // [targets, V]
        var loss = nn.functional.cross_entropy(logits, tensor(Labels, device: model.Device), reduction: nn.Reduction.Sum);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Splits a step's examples into micro-batches: sorted by length (ties keep their order), so each micro-batch pads
    /// little, then cut greedily at <paramref name="maxRows"/> examples or when the padded size (rows x longest) would
    /// pass <paramref name="maxTokens"/> (0 = no limit; an example longer than the limit goes alone). Deterministic:
    /// the same examples always give the same micro-batches.
    /// </summary>
    public static List<TrainingExample[]> Plan(IReadOnlyList<TrainingExample> examples, int maxRows, int maxTokens)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRows, 1);
        var sorted = examples.Select((e, i) => (e, i)).OrderBy(x => x.e.Length).ThenBy(x => x.i).Select(x => x.e).ToList();
        var plan = new List<TrainingExample[]>();
        var current = new List<TrainingExample>();
        foreach (var e in sorted)
        {
            // Sorted ascending: e is the longest of the micro-batch it joins.
            bool full = current.Count == maxRows || (maxTokens > 0 && current.Count > 0 && (long)(current.Count + 1) * e.Length > maxTokens);
            if (full)
            {
                plan.Add([.. current]);
                current.Clear();
            }
            current.Add(e);
        }
        if (current.Count > 0) plan.Add([.. current]);
        return plan;
    }
}
