namespace KVLink.Core.Generation;

/// <summary>
/// The log probability of one generated token under the model (softmax of the raw logits, before temperature, top-k
/// or top-p), with the most likely alternatives at that step when they were asked for.
/// </summary>
/// <param name="TokenId">The token id.</param>
/// <param name="Token">The token's text (its bytes as UTF-8; a token holding part of a character shows U+FFFD there, and
/// <see cref="Bytes"/> has its exact bytes).</param>
/// <param name="Logprob">Natural log of its probability.</param>
/// <param name="TopAlternatives">The most likely tokens at this step, most likely first (empty on alternatives themselves,
/// and when <see cref="GenerationOptions.TopLogprobs"/> is 0).</param>
public sealed record TokenLogprob(int TokenId, string Token, float Logprob, IReadOnlyList<TokenLogprob> TopAlternatives)
{
    /// <summary>The token's exact bytes (what OpenAI's <c>bytes</c> field carries): unlike <see cref="Token"/>, correct
    /// for a token that holds only part of a multi-byte character. Empty for special tokens.</summary>
    public IReadOnlyList<byte> Bytes { get; init; } = [];
}
