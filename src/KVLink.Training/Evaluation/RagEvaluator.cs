using KVLink.Core.Engine;
using KVLink.Core.Prompting;

namespace KVLink.Training.Evaluation;

/// <summary>Accuracy of one evaluated configuration, overall and per sample kind.</summary>
/// <param name="Correct">Correct answers per kind (samples without a kind count under "all").</param>
/// <param name="Total">Samples per kind.</param>
/// <param name="Elapsed">Wall time of the evaluation.</param>
/// <param name="PromptTokens">Prompt tokens of every question together (<c>Usage.PromptTokens</c>).</param>
/// <param name="ComputedTokens">Prompt tokens computed at query time, summed (<c>Usage.ComputedTokens</c>: segment-0 tokens
/// plus any document encoded on demand; the documents' own precompute is not counted).</param>
public sealed record RagAccuracy(IReadOnlyDictionary<string, int> Correct, IReadOnlyDictionary<string, int> Total, TimeSpan Elapsed,
    long PromptTokens = 0, long ComputedTokens = 0)
{
    /// <summary>Accuracy in percent for a kind (0 when the kind has no samples).</summary>
    public double Percent(string kind) => Total.TryGetValue(kind, out int n) && n > 0 ? 100.0 * Correct.GetValueOrDefault(kind) / n : 0;

    /// <summary>Accuracy in percent over every sample.</summary>
    public double Overall => Total.Values.Sum() == 0 ? 0 : 100.0 * Correct.Values.Sum() / Total.Values.Sum();
}

/// <summary>
/// Runs retrieval-QA samples through a <see cref="KvLinkEngine"/> (documents precomputed, then one greedy generation per
/// question) and scores them with <see cref="AnswerMetric"/>. Works for any checkpoint the engine loads, on the
/// synthetic corpus or NQ/HotpotQA-style JSONL.
/// </summary>
public static class RagEvaluator
{
    /// <summary>Label used for samples without a kind.</summary>
    public const string AllKind = "all";

    /// <summary>Evaluates <paramref name="samples"/> with the given context mode and link tokens.</summary>
    /// <param name="engine">The engine (its model and prompt format).</param>
    /// <param name="samples">QA samples.</param>
    /// <param name="mode">Full prefill (documents encoded together) or KVLink (stored per-document caches plus link tokens).</param>
    /// <param name="linkTokens">Link tokens per document (0 with KVLink mode = naive cache reuse).</param>
    /// <param name="maxNewTokens">Greedy decoding budget per answer.</param>
    /// <param name="onAnswer">Called with each sample, response and verdict (for logs).</param>
    /// <param name="evictAfterUse">Remove each sample's document caches from the engine's store after its question, so long runs keep memory flat.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    public static async Task<RagAccuracy> EvaluateAsync(KvLinkEngine engine, IReadOnlyList<EvalQuestion> samples, ContextMode mode, int linkTokens,
        int maxNewTokens = 200, Action<EvalQuestion, string, bool>? onAnswer = null, bool evictAfterUse = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(samples);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var correct = new Dictionary<string, int>(StringComparer.Ordinal);
        var total = new Dictionary<string, int>(StringComparer.Ordinal);
        long promptTokens = 0, computedTokens = 0;
        var options = new KvLinkGenerationOptions { Mode = mode, LinkTokens = linkTokens, MaxNewTokens = maxNewTokens };
        foreach (var s in samples)
        {
            var ids = new List<string>(s.Documents.Count);
            foreach (var d in s.Documents)
                ids.Add(await engine.PrecomputeAsync(d, cancellationToken).ConfigureAwait(false));
            var result = await engine.GenerateAsync(s.Question, ids, options, cancellationToken).ConfigureAwait(false);
            promptTokens += result.Usage.PromptTokens;
            computedTokens += result.Usage.ComputedTokens;
            bool ok = AnswerMetric.IsCorrect(result.Text, s.Answers);
            string kind = s.Kind ?? AllKind;
            total[kind] = total.GetValueOrDefault(kind) + 1;
            if (ok) correct[kind] = correct.GetValueOrDefault(kind) + 1;
            onAnswer?.Invoke(s, result.Text, ok);
            if (evictAfterUse)
                foreach (string id in ids)
                    for (int slot = 0; slot < ids.Count; slot++)
                        await engine.Store.RemoveAsync(engine.CacheKey(id, slot), cancellationToken).ConfigureAwait(false);
        }
        return new RagAccuracy(correct, total, clock.Elapsed, promptTokens, computedTokens);
    }
}
