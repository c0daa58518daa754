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
        for (int start = 1; start < tokens.Count; start += Window)
        {
            int end = Math.Min(tokens.Count, start + Window);
            int from = Math.Max(0, start - 1 - Context); // the window's own context, then its tokens
            using var scope = NewDisposeScope();
            var ids = tensor(tokens.Skip(from).Take(end - from).Select(t => (long)t).ToArray(), [1, end - from], device: Model.Device);
            var logProbs = nn.functional.log_softmax(Model.Forward(ids).to(ScalarType.Float32), -1)[0]; // [T, vocab]
            // Row r predicts token from + r + 1.
            using Scalar first = (start - 1 - from).ToScalar(), last = (end - 1 - from).ToScalar(); // held past the call (see HeldScalars)
            var rows = arange(first, last, HeldScalars.One, dtype: ScalarType.Int64, device: Model.Device);
            var targets = tensor(tokens.Skip(start).Take(end - start).Select(t => (long)t).ToArray(), device: Model.Device);
            var picked = logProbs.index_select(0, rows).gather(1, targets.unsqueeze(1)).squeeze(1).neg().to(ScalarType.Float64);
            picked.data<double>().ToArray().CopyTo(scores, start);
        }
        return scores;
    }
}
