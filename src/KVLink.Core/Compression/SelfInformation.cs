using TorchSharp;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Compression;

/// <summary>
/// Per-token self-information <c>-log p(x_t | x_&lt;t)</c> under a causal language model, as LLMLingua scores
/// tokens: surprising tokens (names, numbers) carry information, predictable ones (function words) little.
/// Long documents are scored in windows that each see up to <see cref="Context"/> preceding tokens of the
/// same document, so the cost stays linear in the document length.
/// </summary>
internal sealed class SelfInformation(LlamaForCausalLM model, int window = 512, int context = 256) : ITokenScorer
{
    /// <inheritdoc/>
    public string Name => $"selfinfo-w{Window}-c{Context}";

    /// <summary>The scoring model.</summary>
    public LlamaForCausalLM Model { get; } = model ?? throw new ArgumentNullException(nameof(model));

    /// <summary>Tokens scored per forward pass.</summary>
    public int Window { get; } = window > 0 ? window : throw new ArgumentOutOfRangeException(nameof(window));

    /// <summary>Preceding tokens each window is conditioned on.</summary>
    public int Context { get; } = context >= 0 ? context : throw new ArgumentOutOfRangeException(nameof(context));

    /// <summary>Scores every token; the first has no context and scores +infinity (it is always kept).</summary>
    public double[] Score(IReadOnlyList<int> tokens)
    {
        var scores = new double[tokens.Count];
        if (tokens.Count == 0) return scores;
        scores[0] = double.PositiveInfinity;
        using var _ = no_grad();
        foreach (var w in Windows(tokens.Count, Window, Context))
        {
            using var scope = NewDisposeScope();
            var ids = tensor(tokens.Skip(w.From).Take(w.End - w.From).Select(t => (long)t).ToArray(), [1, w.End - w.From], device: Model.Device);
            var logits = Model.Forward(ids)[0]; // [T, vocab]
            // Row r predicts token From + r + 1.
            Of(logits.narrow(0, w.Start - 1 - w.From, w.End - w.Start), tokens, w.Start).CopyTo(scores, w.Start);
        }
        return scores;
    }

    /// <summary>
    /// The scoring windows of a document of <paramref name="count"/> tokens: each scores tokens [Start, End) (from 1 on,
    /// <paramref name="window"/> at a time) from a causal forward over tokens [From, End), From being up to
    /// <paramref name="context"/> tokens before the token that predicts Start.
    /// </summary>
    public static IEnumerable<(int From, int Start, int End)> Windows(int count, int window, int context)
    {
        for (int start = 1; start < count; start += window)
            yield return (Math.Max(0, start - 1 - context), start, Math.Min(count, start + window));
    }

    /// <summary>
    /// Self-information of tokens [<paramref name="first"/>, first + rows) of <paramref name="tokens"/> from the
    /// <paramref name="logits"/> ([rows, vocab]) of the rows that predict them, in float64.
    /// </summary>
    public static double[] Of(Tensor logits, IReadOnlyList<int> tokens, int first)
    {
        using var scope = NewDisposeScope();
        int rows = (int)logits.shape[0];
        var targets = tensor(tokens.Skip(first).Take(rows).Select(t => (long)t).ToArray(), device: logits.device);
        var logProbs = nn.functional.log_softmax(logits.to(ScalarType.Float32), -1);
        return logProbs.gather(1, targets.unsqueeze(1)).squeeze(1).neg().to(ScalarType.Float64).data<double>().ToArray();
    }
}
