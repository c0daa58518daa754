
namespace KVLink.Core.Generation;

/// <summary>One item of a streamed generation: a text delta, and on the last item the full result.</summary>
/// <param name="Delta">New text since the previous update (never splits a UTF-8 character); empty on the final item.</param>
/// <param name="Result">The complete result, on the final item only.</param>
public sealed record GenerationUpdate(string Delta, GenerationResult? Result = null);
