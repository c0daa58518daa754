using KVLink.Core.Model;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Train;

/// <summary>
/// A fast learning signal while training: teacher-forced accuracy on held-out questions (every response token predicted
/// correctly from the true prefix), one forward pass each. The accuracy table itself uses real generation through the engine.
/// </summary>
internal static class Probe
{
    public static string Run(LlamaForCausalLM model, TrainingExampleBuilder builder, IReadOnlyList<SyntheticRagQuestion> questions,
        TrainingAttention attention, int linkTokens)
    {
        int[] hits = new int[2], counts = new int[2], first = new int[2];
        using var _ = no_grad();
        foreach (var q in questions)
        {
            using var scope = NewDisposeScope();
            var example = builder.FromQa(q.Sample, attention, linkTokens);
            int t = example.Length;
            var predicted = Predict(model, example);
            // Only the response counts (documents may be targets too when the builder trains on them).
            int prompt = builder.Layout(q.Sample, linkTokens).Length;
            bool ok = true;
            for (int i = prompt; i < t; i++)
                if (example.Targets[i] && predicted[i - 1] != example.Tokens[i]) ok = false;
            if (predicted[prompt - 1] == example.Tokens[prompt]) first[(int)q.Kind]++;
            int kind = (int)q.Kind;
            counts[kind]++;
            if (ok) hits[kind]++;
        }
        return $"probe {attention} K={linkTokens}: single-hop {100.0 * hits[0] / Math.Max(1, counts[0]):F1}%, two-hop {100.0 * hits[1] / Math.Max(1, counts[1]):F1}% (first token {100.0 * first[0] / Math.Max(1, counts[0]):F0}%/{100.0 * first[1] / Math.Max(1, counts[1]):F0}%, teacher-forced, n={questions.Count})";
    }

    /// <summary>Both KVLink probes of a blocked phase: K = 0 and K = 5 link tokens.</summary>
    public static string Link(LlamaForCausalLM model, TrainingExampleBuilder builder, IReadOnlyList<SyntheticRagQuestion> questions) =>
        Run(model, builder, questions, TrainingAttention.Blocked, 0) + " | " + Run(model, builder, questions, TrainingAttention.Blocked, 5);

    /// <summary>The greedy next-token prediction at every position of <paramref name="example"/>, in one teacher-forced forward pass.</summary>
    public static long[] Predict(LlamaForCausalLM model, TrainingExample example)
    {
        using var scope = NewDisposeScope();
        long[] positions = [.. Enumerable.Range(0, example.Length).Select(i => (long)i)];
        var step = model.Step(positions, example.Mask(model.Device), null);
        var tokens = tensor(example.Tokens.Select(i => (long)i).ToArray(), [1, example.Length], device: model.Device);
        return model.Forward(tokens, step)[0].argmax(-1).data<long>().ToArray();
    }
}
