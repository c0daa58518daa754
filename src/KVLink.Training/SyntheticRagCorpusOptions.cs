namespace KVLink.Training;

/// <summary>Sizes and seed of a synthetic corpus.</summary>
public sealed record SyntheticRagCorpusOptions
{
    /// <summary>Seed; the same options always give the same corpus.</summary>
    public ulong Seed { get; init; } = 1234;

    /// <summary>Training questions of each kind.</summary>
    public int TrainQuestionsPerKind { get; init; } = 2000;

    /// <summary>Evaluation questions of each kind.</summary>
    public int EvalQuestionsPerKind { get; init; } = 500;

    /// <summary>Fewest documents per question.</summary>
    public int MinDocuments { get; init; } = 5;

    /// <summary>Most documents per question.</summary>
    public int MaxDocuments { get; init; } = 10;

    /// <summary>Most follow-up questions (other facts of the same documents) attached to a training question.</summary>
    public int MaxFollowUps { get; init; } = 8;
}
