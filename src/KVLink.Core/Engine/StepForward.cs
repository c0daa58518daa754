using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// The one forward of a <see cref="BatchScheduler"/> step: every part's rows (a decoding sequence's token, a prompt's chunk)
/// in one input, each sequence attending to its own cache through its <see cref="SequenceRows"/>; a step of one sequence
/// is the same path with one part. Where the parts divide evenly, they run as groups side by side, one per thread
/// (<see cref="StepGroups"/>). Model thread, inside the step's dispose scope.
/// </summary>
internal static class StepForward
{
    /// <summary>
    /// One forward over every part's rows, as groups where <paramref name="groups"/> allows and the plan pays, each forward's
    /// rows padded where <paramref name="pad"/> allows and the model is one that gains (<see cref="RowBuckets"/>); returns
    /// the logits [1, outputs, vocab] of the rows that asked for them, in order.
    /// </summary>
    public static Tensor? Run(LlamaForCausalLM model, List<(ScheduledSequence Sequence, ScheduledSequence.Chunk Chunk)> parts, DecodeRows decode, bool groups = true, bool pad = true)
    {
        pad &= RowBuckets.Applies(model);
        if (groups && parts.Count > 1 && StepGroups.Available(model.Device)
            && StepGroups.Plan([.. parts.Select(p => p.Chunk.Positions.Length)], get_num_threads(), model.WeightBytes) is { } starts)
            return StepGroups.Run(starts, parts.Count, decode, (first, count, own) => Run(model, parts, first, count, own, pad));
        return Run(model, parts, 0, parts.Count, decode, pad);
    }

    /// <summary>One forward over parts [<paramref name="first"/>, first + <paramref name="count"/>), whose leading <paramref name="decode"/> rows decode.</summary>
    private static Tensor? Run(LlamaForCausalLM model, List<(ScheduledSequence Sequence, ScheduledSequence.Chunk Chunk)> parts, int first, int count, DecodeRows decode, bool pad)
    {
        int rows = 0;
        bool output = false;
        for (int i = first; i < first + count; i++) (rows, output) = (rows + parts[i].Chunk.Positions.Length, output || parts[i].Chunk.Output);
        // Padding rows (token 0 at position 0) belong to no sequence: they attend nowhere and are written to no cache.
        int padded = pad ? RowBuckets.Padded(rows) : rows;
        var positions = new long[padded];
        var tokens = new long[padded];
        var sequences = new SequenceRows[count];
        int start = 0;
        for (int i = 0; i < count; i++)
        {
            var (s, c) = parts[first + i];
            int n = c.Positions.Length;
            c.Positions.CopyTo(positions, start);
            c.Tokens.CopyTo(tokens, start);
            sequences[i] = new SequenceRows(start, n, tensor(c.Positions, device: model.Device), c.Positions.Max(),
                AttentionMasks.CausalOverCache(c.Positions, KeyLength(s.Cache!, c), model.Device), s.Cache!, c.Output) { Outputs = Math.Max(c.Outputs, 1) };
            start += n;
        }
        // The last layer computes queries and MLP only for the rows whose logits are wanted (a sequence's last, or a scoring
        // chunk's every row), in sequence order.
        var hidden = model.Hidden(tensor(tokens, [1, padded], device: model.Device), model.BatchStep(positions, sequences, decode), lastOnly: true);
        // A step whose every row is an output runs the full forward, padding rows included: they are no one's output.
        if (hidden.size(1) == padded && padded > rows) hidden = hidden.narrow(1, 0, rows);
        return output ? model.Logits(hidden, decode) : null;
    }

    /// <summary>Keys a chunk attends over: every cache position written or placed so far up to its last position.</summary>
    private static int KeyLength(AttentionCache cache, ScheduledSequence.Chunk c) => (int)Math.Max(cache.Length, c.Positions.Max() + 1);
}
