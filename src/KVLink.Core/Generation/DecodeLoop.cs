using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Generation;

/// <summary>
/// The choices of the decode phase, shared by every prefill strategy: sample each token from the last logits and end at
/// a stop token, the token budget or the cache's end. <see cref="Next"/> is the one place where a token is chosen and the
/// end decided; it runs no forward itself: the engine's scheduler feeds each token back in its next step, batched with
/// other sequences (the test support's <c>DirectDecode</c> feeds one sequence alone). Called where the logits live, inside
/// their dispose scope, on the model thread.
/// </summary>
internal sealed class DecodeLoop(LlamaForCausalLM model, AttentionCache cache, GenerationOptions options, IReadOnlySet<int> stopTokens,
    TokenLogprobs? logprobs = null)
{
    private readonly TokenSampler _sampler = new(options);
    // The model and the cache only bound the answer (the context, the cache's end); whoever feeds tokens back holds them.
    private readonly long _limit = Math.Min(cache.Capacity, model.Config.MaxPositionEmbeddings);
    private int _generated;

    /// <summary>Why the loop ended; null while it runs.</summary>
    public FinishReason? Finish { get; private set; }

    /// <summary>
    /// Chooses the token that sits at <paramref name="position"/> from the logits of the token before it. Returns null
    /// when it is a stop token (not emitted; <see cref="Finish"/> is then <see cref="FinishReason.Stop"/>); otherwise the
    /// token to emit, and <see cref="Finish"/> becomes <see cref="FinishReason.Length"/> when it is the last one allowed.
    /// </summary>
    public int? Next(Tensor logits, long position)
    {
        if (Finish is not null) throw new InvalidOperationException("The decode loop has already finished.");
        int token = _sampler.Next(logits);
        if (stopTokens.Contains(token)) { Finish = FinishReason.Stop; return null; }
        logprobs?.Add(logits, token);
        _generated++;
        // The token just chosen sits at position: prompt and answer together never exceed the context.
        if (_generated >= options.MaxNewTokens || position + 1 >= _limit) Finish = FinishReason.Length;
        return token;
    }

    /// <summary>Ends the loop because a stop sequence matched in the text (<see cref="FinishReason.Stop"/>).</summary>
    public void StopSequenceMatched() => Finish = FinishReason.Stop;
}
