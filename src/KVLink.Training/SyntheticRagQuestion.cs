namespace KVLink.Training;

/// <summary>The kind of a synthetic question.</summary>
public enum SyntheticQuestionKind
{
    /// <summary>Answered by one document (a person's birthplace or employer).</summary>
    SingleHop,

    /// <summary>Needs two documents (a person's document names a city or company whose own document holds the answer).</summary>
    TwoHop,
}

/// <summary>A generated question: the QA sample, its kind, the prompt slots of the supporting documents and the gold answer.</summary>
/// <param name="Sample">The documents (gold and distractors, shuffled), the question and the trained response: the supporting
/// facts restated as sentences ("Zorvan was born in Quelmar. Quelmar is a city in Vostria."), so a two-hop answer names its
/// bridge entity first (a one-step chain of thought).</param>
/// <param name="Kind">Single- or two-hop.</param>
/// <param name="SupportingSlots">Slots (0-based) of the documents needed to answer, in reasoning order.</param>
/// <param name="Gold">The gold answer the metric looks for (for single-hop questions, the response itself).</param>
public sealed record SyntheticRagQuestion(QaSample Sample, SyntheticQuestionKind Kind, IReadOnlyList<int> SupportingSlots, string Gold);
