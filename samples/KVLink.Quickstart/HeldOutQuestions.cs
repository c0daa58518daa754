using KVLink.Training;

namespace KVLink.Quickstart;

/// <summary>
/// The quickstart's questions: drawn at random, with a fixed seed, from the held-out split that docs/accuracy.md measures
/// (the synthetic corpus's evaluation questions, which no demo model was trained on), so the few questions it shows are a
/// fair sample of that measurement rather than hand-picked ones. Half single-hop, half two-hop, as in the measurement.
/// </summary>
public static class HeldOutQuestions
{
    /// <summary>Seed of the draw: fixed, so every run shows the same questions (pass <c>--seed</c> for others).</summary>
    public const ulong DefaultDrawSeed = 2026;

    /// <summary>Questions of each kind shown.</summary>
    public const int DefaultPerKind = 3;

    /// <summary>
    /// Draws <paramref name="perKind"/> single-hop and <paramref name="perKind"/> two-hop questions, without repeats, from the
    /// first <paramref name="splitPerKind"/> held-out questions of each kind of the corpus with seed <paramref name="corpusSeed"/>;
    /// returned alternating single-hop, two-hop. The same arguments always give the same questions.
    /// </summary>
    /// <param name="corpusSeed">Seed of the synthetic corpus (the demo recipe's: 1234).</param>
    /// <param name="splitPerKind">Held-out questions of each kind measured (the accuracy record's <c>questions_per_kind</c>).</param>
    /// <param name="drawSeed">Seed of the random draw.</param>
    /// <param name="perKind">Questions of each kind to draw.</param>
    public static IReadOnlyList<SyntheticRagQuestion> Draw(ulong corpusSeed, int splitPerKind, ulong drawSeed = DefaultDrawSeed, int perKind = DefaultPerKind)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(perKind);
        ArgumentOutOfRangeException.ThrowIfLessThan(splitPerKind, perKind);
        // Only the held-out stream is generated: it does not depend on the training split's size.
        var split = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = corpusSeed, TrainQuestionsPerKind = 0, EvalQuestionsPerKind = splitPerKind }).Eval;
        var random = new TrainingRandom(drawSeed);
        var single = Sample(split.Where(q => q.Kind == SyntheticQuestionKind.SingleHop).ToList(), perKind, random);
        var twoHop = Sample(split.Where(q => q.Kind == SyntheticQuestionKind.TwoHop).ToList(), perKind, random);
        return [.. single.Zip(twoHop).SelectMany(p => new[] { p.First, p.Second })];
    }

    // The first n items of a Fisher-Yates shuffle: n distinct items, each subset equally likely.
    private static List<SyntheticRagQuestion> Sample(List<SyntheticRagQuestion> items, int n, TrainingRandom random)
    {
        for (int i = 0; i < n; i++)
        {
            int j = i + random.Next(items.Count - i);
            (items[i], items[j]) = (items[j], items[i]);
        }
        return items.GetRange(0, n);
    }
}
