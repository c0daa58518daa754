using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Generation;

/// <summary>
/// The decode phase shared by every prefill strategy: sample from the last logits, feed the token back
/// one position further, repeat until a stop token, the token budget or the cache's end.
/// <see cref="Next"/> is the one place where a token is chosen and the end decided, for one sequence run alone
/// (<see cref="Run"/>) and for the engine's scheduler, which batches many sequences' steps.
/// Synchronous by design: TorchSharp dispose scopes are thread-local, so a step never awaits.
/// </summary>
internal sealed class DecodeLoop(LlamaForCausalLM model, AttentionCache cache, GenerationOptions options, IReadOnlySet<int> stopTokens,
    TokenLogprobs? logprobs = null)
{
    private readonly TokenSampler _sampler = new(options);
    private readonly long _limit = Math.Min(cache.Capacity, model.Config.MaxPositionEmbeddings);
    private int _generated;

    /// <summary>Slots of the cache holding keys and values when <see cref="Run"/> runs it: the prompt and every generated
    /// token that was fed back (the last one chosen is not, when the loop ends on the token budget or a stop sequence).</summary>
    public long Filled { get; private set; }

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

    /// <summary>
    /// Runs the loop to the end, reporting each token to <paramref name="onToken"/>, which returns true to stop (a stop
    /// sequence matched: <see cref="Finish"/> is then <see cref="FinishReason.Stop"/>); returns the tokens and the
    /// elapsed time of <paramref name="clock"/> when the first token was chosen.
    /// </summary>
    public (List<int> Tokens, TimeSpan TimeToFirstToken) Collect(Tensor lastLogits, long nextPosition, System.Diagnostics.Stopwatch clock, Func<int, bool>? onToken, CancellationToken cancellationToken)
    {
        var tokens = new List<int>();
        TimeSpan? first = null;
        foreach (int token in Run(lastLogits, nextPosition, cancellationToken))
        {
            first ??= clock.Elapsed;
            tokens.Add(token);
            if (onToken?.Invoke(token) == true) { Finish = FinishReason.Stop; break; }
        }
        return (tokens, first ?? clock.Elapsed);
    }

    /// <summary>
    /// Yields generated tokens, starting from the logits of the last prompt token (which the loop disposes).
    /// Cancellation is checked before every model step.
    /// </summary>
    public IEnumerable<int> Run(Tensor lastLogits, long nextPosition, CancellationToken cancellationToken)
    {
        var logits = lastLogits;
        Filled = nextPosition;
        try
        {
            while (true)
            {
                if (Next(logits, nextPosition) is not { } token) yield break;
                yield return token;
                if (Finish is not null) yield break;

                cancellationToken.ThrowIfCancellationRequested();
                using (var scope = NewDisposeScope())
                using (no_grad()) // per step: grad mode is per thread, and an iterator may resume on another one
                using (DecodeRows.Mark()) // decode steps only: the bandwidth kernel, int8 weights where the model has them
                {
                    long[] pos = [nextPosition];
                    var step = model.Step(pos, AttentionMasks.CausalOverSlots(pos, (int)nextPosition + 1, model.Device), cache);
                    var next = model.Forward(tensor(new long[] { token }, [1, 1], device: model.Device), step).MoveToOuterDisposeScope();
                    logits.Dispose();
                    logits = next;
                }
                Filled = nextPosition + 1;
                nextPosition++;
            }
        }
        finally
        {
            logits.Dispose();
        }
    }
}
