using KVLink.Core.Linking;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Training;

/// <summary>How the tokens of a training example attend to each other.</summary>
public enum TrainingAttention
{
    /// <summary>Plain causal attention over all tokens (plain text, and the full-attention QA variant).</summary>
    Causal,

    /// <summary>KVLink's segment mask: documents attend only within themselves; link tokens, question and answer see everything before them.</summary>
    Blocked,
}

/// <summary>
/// One tokenized training sequence at positions 0..T-1: its token ids, which tokens are targets of the loss
/// (predicted from the token before them), and its attention rule.
/// </summary>
public sealed class TrainingExample
{
    /// <summary>Creates an example; all arrays have the same length, and <paramref name="segments"/> is required when blocked.</summary>
    public TrainingExample(IReadOnlyList<int> tokens, IReadOnlyList<bool> targets, TrainingAttention attention, IReadOnlyList<int>? segments = null)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(targets);
        if (tokens.Count < 2) throw new ArgumentException("A training example needs at least two tokens.", nameof(tokens));
        if (targets.Count != tokens.Count) throw new ArgumentException("Every token needs a target flag.", nameof(targets));
        if (attention == TrainingAttention.Blocked && segments is null) throw new ArgumentException("A blocked example needs segment ids.", nameof(segments));
        if (segments is not null && segments.Count != tokens.Count) throw new ArgumentException("Every token needs a segment id.", nameof(segments));
        if (targets[0]) throw new ArgumentException("The first token cannot be a target: nothing precedes it.", nameof(targets));
        Tokens = tokens;
        Targets = targets;
        Attention = attention;
        Segments = segments;
    }

    /// <summary>Token ids.</summary>
    public IReadOnlyList<int> Tokens { get; }

    /// <summary>True for tokens the loss predicts (from the logits of the previous position).</summary>
    public IReadOnlyList<bool> Targets { get; }

    /// <summary>The attention rule.</summary>
    public TrainingAttention Attention { get; }

    /// <summary>Segment of each token (0 = sees everything earlier, j+1 = document j); null for causal examples built without a layout.</summary>
    public IReadOnlyList<int>? Segments { get; }

    /// <summary>Number of tokens.</summary>
    public int Length => Tokens.Count;

    /// <summary>Number of target tokens.</summary>
    public int TargetCount => Targets.Count(t => t);

    /// <summary>The bool [T, T] attention mask (true = may attend).</summary>
    public Tensor Mask(Device? device = null)
    {
        if (Attention == TrainingAttention.Blocked) return SegmentMask.Build(Segments!, device);
        long[] positions = [.. Enumerable.Range(0, Length).Select(i => (long)i)];
        return AttentionMasks.CausalSelf(positions, device);
    }

    /// <summary>True when the query at <paramref name="q"/> may attend the key at <paramref name="k"/>.</summary>
    public bool Visible(int q, int k) =>
        Attention == TrainingAttention.Blocked ? SegmentMask.Visible(Segments!, q, k) : k <= q;
}
