using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// The one forward of a <see cref="BatchScheduler"/> step: every part's rows (a decoding sequence's token, a prompt's chunk)
/// in one input, each sequence attending to its own cache through its <see cref="SequenceRows"/>; a step of one sequence
/// is the same path with one part. Model thread, inside the step's dispose scope.
/// </summary>
internal static class StepForward
{
    /// <summary>One forward over every part's rows; returns the logits [1, outputs, vocab] of the rows that asked for them, in order.</summary>
    public static Tensor? Run(LlamaForCausalLM model, List<(ScheduledSequence Sequence, ScheduledSequence.Chunk Chunk)> parts, DecodeRows decode)
    {
        int rows = parts.Sum(p => p.Chunk.Positions.Length);
        var positions = new long[rows];
        var tokens = new long[rows];
        var sequences = new SequenceRows[parts.Count];
        int start = 0;
        for (int i = 0; i < parts.Count; i++)
        {
            var (s, c) = parts[i];
            int n = c.Positions.Length;
            c.Positions.CopyTo(positions, start);
            c.Tokens.CopyTo(tokens, start);
            sequences[i] = new SequenceRows(start, n, tensor(c.Positions, device: model.Device), c.Positions.Max(),
                AttentionMasks.CausalOverCache(c.Positions, KeyLength(s.Cache!, c), model.Device), s.Cache!, c.Output) { Outputs = Math.Max(c.Outputs, 1) };
            start += n;
        }
        // The last layer computes queries and MLP only for the rows whose logits are wanted (a sequence's last, or a scoring
        // chunk's every row), in sequence order.
        var hidden = model.Hidden(tensor(tokens, [1, rows], device: model.Device), model.BatchStep(positions, sequences, decode), lastOnly: true);
        return parts.Any(p => p.Chunk.Output) ? model.Logits(hidden, decode) : null;
    }

    /// <summary>Keys a chunk attends over: every cache position written or placed so far up to its last position.</summary>
    private static int KeyLength(AttentionCache cache, ScheduledSequence.Chunk c) => (int)Math.Max(cache.Length, c.Positions.Max() + 1);
}
