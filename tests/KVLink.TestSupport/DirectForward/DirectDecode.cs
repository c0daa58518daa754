using KVLink.Core.Generation;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// A <see cref="DecodeLoop"/> run alone, outside the engine's scheduler: each chosen token fed back through its own
/// forward step of the caller's <c>model</c> over the caller's <c>cache</c> (the ones the loop was made for, which the
/// caller created and still holds). The reference the tests compare the scheduler's batched decoding with.
/// </summary>
internal static class DirectDecode
{
    /// <summary>
    /// Runs the loop to the end, reporting each token to <paramref name="onToken"/>, which returns true to stop (a stop
    /// sequence matched: <see cref="DecodeLoop.Finish"/> is then <see cref="FinishReason.Stop"/>); returns the tokens and the
    /// elapsed time of <paramref name="clock"/> when the first token was chosen.
    /// </summary>
    public static (List<int> Tokens, TimeSpan TimeToFirstToken) Collect(this DecodeLoop loop, LlamaForCausalLM model, AttentionCache cache, Tensor lastLogits, long nextPosition, System.Diagnostics.Stopwatch clock, Func<int, bool>? onToken, CancellationToken cancellationToken)
    {
        var tokens = new List<int>();
        TimeSpan? first = null;
        foreach (int token in loop.Run(model, cache, lastLogits, nextPosition, cancellationToken))
        {
            first ??= clock.Elapsed;
            tokens.Add(token);
            if (onToken?.Invoke(token) == true) { loop.StopSequenceMatched(); break; }
        }
        return (tokens, first ?? clock.Elapsed);
    }

    /// <summary>
    /// Yields generated tokens, starting from the logits of the last prompt token (which the loop disposes).
    /// Cancellation is checked before every model step.
    /// </summary>
    public static IEnumerable<int> Run(this DecodeLoop loop, LlamaForCausalLM model, AttentionCache cache, Tensor lastLogits, long nextPosition, CancellationToken cancellationToken)
    {
        var logits = lastLogits;
        try
        {
            while (true)
            {
                if (loop.Next(logits, nextPosition) is not { } token) yield break;
                yield return token;
                if (loop.Finish is not null) yield break;

                cancellationToken.ThrowIfCancellationRequested();
                using (var scope = NewDisposeScope())
                using (no_grad()) // per step: grad mode is per thread, and an iterator may resume on another one
                {
                    // A decode step: the bandwidth kernel, int8 weights where the model has them.
                    long[] pos = [nextPosition];
                    var step = model.Step(pos, AttentionMasks.CausalOverCache(pos, (int)nextPosition + 1, model.Device), cache, DecodeRows.All());
                    var next = model.Forward(tensor(new long[] { token }, [1, 1], device: model.Device), step).MoveToOuterDisposeScope();
                    logits.Dispose();
                    logits = next;
                }
                nextPosition++;
            }
        }
        finally
        {
            logits.Dispose();
        }
    }
}
