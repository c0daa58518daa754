namespace KVLink.Core.Generation;

/// <summary>Token accounting of one generation.</summary>
/// <param name="PromptTokens">Tokens in the prompt (documents included).</param>
/// <param name="CachedTokens">Prompt tokens whose keys/values were reused from stored caches.</param>
/// <param name="ComputedTokens">Prompt tokens run through the model for this request.</param>
/// <param name="GeneratedTokens">Tokens generated (stop token excluded).</param>
public sealed record GenerationUsage(int PromptTokens, int CachedTokens, int ComputedTokens, int GeneratedTokens);

/// <summary>Where the time of one generation went.</summary>
/// <param name="CacheLoad">Fetching stored document caches (and the prompt prefix) into the attention cache.</param>
/// <param name="Rerotation">Re-rotating cached keys to their global positions.</param>
/// <param name="Prefill">The forward passes over the computed prompt tokens (including documents encoded on demand for a slot not cached yet);
/// under load these are scheduler steps shared with other requests, so their whole duration counts.</param>
/// <param name="TimeToFirstToken">From the call until the first token was chosen, as the caller sees it (waiting in the scheduler's queue included).</param>
/// <param name="Total">The whole request.</param>
public sealed record GenerationTimings(TimeSpan CacheLoad, TimeSpan Rerotation, TimeSpan Prefill, TimeSpan TimeToFirstToken, TimeSpan Total);

/// <summary>The outcome of a generation.</summary>
/// <param name="Text">The generated text (stop token excluded).</param>
/// <param name="TokenIds">The generated token ids (stop token excluded).</param>
/// <param name="FinishReason">Why generation ended.</param>
/// <param name="Usage">Token accounting.</param>
/// <param name="Timings">Time spent per stage.</param>
public sealed record GenerationResult(string Text, IReadOnlyList<int> TokenIds, FinishReason FinishReason, GenerationUsage Usage, GenerationTimings Timings)
{
    /// <summary>The prompt's token ids as the model read them (documents included), for inspection.</summary>
    public IReadOnlyList<int> PromptTokenIds { get; init; } = [];

    /// <summary>One entry per generated token when <see cref="GenerationOptions.Logprobs"/> was set; otherwise null.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }

    /// <summary>The key of the conversation's session (its kept attention cache) for a chat request; null otherwise.
    /// Pass it back as <c>KvLinkGenerationOptions.ConversationId</c> (or <c>ChatOptions.ConversationId</c>) to continue it.</summary>
    public string? ConversationId { get; init; }
}
