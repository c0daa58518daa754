using KVLink.Core.Generation;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// A <see cref="DecodeLoop"/> run alone, outside the engine's scheduler: each chosen token fed back through its own
/// forward step. The reference the tests compare the scheduler's batched decoding with.
/// </summary>
internal static class DirectDecode
{
    /// <summary>
    /// Runs the loop to the end, reporting each token to <paramref name="onToken"/>, which returns true to stop (a stop
    /// sequence matched: <see cref="DecodeLoop.Finish"/> is then <see cref="FinishReason.Stop"/>); returns the tokens and the
    /// elapsed time of <paramref name="clock"/> when the first token was chosen.
    /// </summary>
    public static (List<int> Tokens, TimeSpan TimeToFirstToken) Collect(this DecodeLoop loop, Tensor lastLogits, long nextPosition, System.Diagnostics.Stopwatch clock, Func<int, bool>? onToken, CancellationToken cancellationToken)
    {
        var tokens = new List<int>();
        TimeSpan? first = null;
        foreach (int token in loop.Run(lastLogits, nextPosition, cancellationToken))
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
    public static IEnumerable<int> Run(this DecodeLoop loop, Tensor lastLogits, long nextPosition, CancellationToken cancellationToken)
    {
        var logits = lastLogits;
        loop.Filled = nextPosition;
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
                    var step = loop.Model.Step(pos, AttentionMasks.CausalOverCache(pos, (int)nextPosition + 1, loop.Model.Device), loop.Cache, DecodeRows.All());
                    var next = loop.Model.Forward(tensor(new long[] { token }, [1, 1], device: loop.Model.Device), step).MoveToOuterDisposeScope();
                    logits.Dispose();
                    logits = next;
                }
                loop.Filled = nextPosition + 1;
                nextPosition++;
            }
        }
        finally
        {
            logits.Dispose();
        }
    }
}
