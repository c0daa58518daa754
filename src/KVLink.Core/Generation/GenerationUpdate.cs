
namespace KVLink.Core.Generation;

/// <summary>One item of a streamed generation: a text delta, and on the last item the full result.</summary>
/// <param name="Delta">New text since the previous update (never splits a UTF-8 character); empty on the final item.</param>
/// <param name="Result">The complete result, on the final item only.</param>
public sealed record GenerationUpdate(string Delta, GenerationResult? Result = null)
{
    /// <summary>
    /// With <see cref="GenerationOptions.Logprobs"/>, on a text delta of the engine's streams: the logprobs of the tokens
    /// decoded since the previous delta (a token whose text is held back, an unfinished character or a possible stop
    /// sequence, comes with the delta that releases it; tokens whose text never appears, such as a matched stop
    /// sequence's, come only in <see cref="GenerationResult.Logprobs"/>). Null otherwise.
    /// </summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
}
