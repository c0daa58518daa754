using System.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// The burst's compute bound (part of --burst): one scheduler step's forward timed alone on the demo model, with no
/// engine, queue or HTTP around it: one sequence of R prompt rows against S sequences of R rows each (R and the
/// context length from the burst's own prompts), every sequence attending over its own cache as in the engine's steps.
/// The ratio is what the S prompts' rows cost in one batched step over one prompt's rows. The S sequences are timed both
/// as one forward over all threads and as the engine runs them, in groups side by side (<see cref="StepGroups"/>).
/// </summary>
internal static class StepProbe
{
    /// <summary>
    /// Median milliseconds of a step of one sequence and of <paramref name="sequences"/> sequences, <paramref name="rows"/>
    /// rows each, the latter as one forward and as groups (as one forward where the plan makes no groups).
    /// </summary>
    public static (double One, double All, double Grouped) Run(LlamaForCausalLM model, int sequences, int rows, int context, int repeats = 40)
    {
        using var inference = inference_mode();
        var caches = Enumerable.Range(0, sequences).Select(_ => new AttentionCache(model.Config, context + rows, model.DType, model.Device)).ToArray();
        try
        {
            foreach (var c in caches) c.Advance(context + rows); // as if the documents were placed; every repeat rewrites the same rows
            var random = new Random(1);
            double Median(int count, bool groups = false)
            {
                var ms = new List<double>();
                for (int rep = 0; rep < repeats; rep++)
                {
                    using var scope = NewDisposeScope();
                    var clock = Stopwatch.StartNew();
                    var tokens = new long[count * rows];
                    for (int i = 0; i < tokens.Length; i++) tokens[i] = random.Next(model.Config.VocabSize);
                    // Sequences [first, first + n) as one forward: what one group (or the whole step) computes.
                    Tensor Forward(int first, int n)
                    {
                        var positions = new long[n * rows];
                        var parts = new SequenceRows[n];
                        long[] own = [.. Enumerable.Range(context, rows).Select(p => (long)p)];
                        for (int s = 0; s < n; s++)
                        {
                            own.CopyTo(positions, s * rows);
                            parts[s] = new SequenceRows(s * rows, rows, tensor(own, device: model.Device), own[^1],
                                AttentionMasks.CausalOverCache(own, context + rows, model.Device), caches[first + s]);
                        }
                        var hidden = model.Hidden(tensor(tokens[(first * rows)..((first + n) * rows)], [1, n * rows], device: model.Device), model.BatchStep(positions, parts), lastOnly: true);
                        return model.Logits(hidden);
                    }
                    var starts = groups && StepGroups.Available(model.Device) ? StepGroups.Plan([.. Enumerable.Repeat(rows, count)], get_num_threads(), model.WeightBytes) : null;
                    var logits = starts is null ? Forward(0, count) : StepGroups.Run(starts, count, default, (first, n, _) => Forward(first, n))!;
                    _ = logits[0, 0, 0].to(ScalarType.Float32).item<float>(); // waits for the result
                    ms.Add(clock.Elapsed.TotalMilliseconds);
                }
                return Stats.Median(ms);
            }
            Median(1); Median(sequences); Median(sequences, groups: true); // warm-up: JIT, kernels
            return (Median(1), Median(sequences), Median(sequences, groups: true));
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }
}
