using KVLink.Core.Prompting;

namespace KVLink.Training;

/// <summary>A retrieval QA training sample: the documents in prompt order, the question and the reference answer.</summary>
/// <param name="Documents">The retrieved documents, in the order they are placed in the prompt.</param>
/// <param name="Question">The user's question.</param>
/// <param name="Answer">The answer the model is trained to produce.</param>
/// <param name="FollowUps">Optional further questions about the same documents, trained as later turns of the same
/// conversation (each answer is a target); they multiply the look-ups one training sequence teaches.</param>
public sealed record QaSample(IReadOnlyList<KvLinkDocument> Documents, string Question, string Answer, IReadOnlyList<QaTurn>? FollowUps = null);

/// <summary>A question and its answer, as a follow-up turn of a <see cref="QaSample"/>.</summary>
/// <param name="Question">The question.</param>
/// <param name="Answer">The answer.</param>
public sealed record QaTurn(string Question, string Answer);

/// <summary>A plain-text training sample: every token is a target, under full causal attention.</summary>
/// <param name="Text">The text.</param>
public sealed record TextSample(string Text);
