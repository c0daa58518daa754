using System.Diagnostics;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// The burst's compute bound (part of --burst): one scheduler step's forward timed alone on the demo model, with no
/// engine, queue or HTTP around it: one sequence of R prompt rows against S sequences of R rows each (R and the
/// context length from the burst's own prompts), every sequence attending over its own cache as in the engine's steps.
/// The ratio is what the S prompts' rows cost in one batched step over one prompt's rows.
/// </summary>
internal static class StepProbe
{
    /// <summary>Median milliseconds of a step of one sequence and of <paramref name="sequences"/> sequences, <paramref name="rows"/> rows each.</summary>
    public static (double One, double All) Run(LlamaForCausalLM model, int sequences, int rows, int context, int repeats = 40)
    {
        using var inference = inference_mode();
        var caches = Enumerable.Range(0, sequences).Select(_ => new AttentionCache(model.Config, context + rows, model.DType, model.Device)).ToArray();
        try
        {
            foreach (var c in caches) c.Advance(context + rows); // as if the documents were placed; every repeat rewrites the same rows
            var random = new Random(1);
            double Median(int count)
            {
                var ms = new List<double>();
                for (int rep = 0; rep < repeats; rep++)
                {
                    using var scope = NewDisposeScope();
                    var clock = Stopwatch.StartNew();
                    var positions = new long[count * rows];
                    var tokens = new long[count * rows];
                    var parts = new SequenceRows[count];
                    long[] own = [.. Enumerable.Range(context, rows).Select(p => (long)p)];
                    for (int s = 0; s < count; s++)
                    {
                        own.CopyTo(positions, s * rows);
                        for (int i = 0; i < rows; i++) tokens[s * rows + i] = random.Next(model.Config.VocabSize);
                        parts[s] = new SequenceRows(s * rows, rows, tensor(own, device: model.Device), own[^1],
                            AttentionMasks.CausalOverCache(own, context + rows, model.Device), caches[s]);
                    }
                    var hidden = model.Hidden(tensor(tokens, [1, positions.Length], device: model.Device), model.BatchStep(positions, parts), lastOnly: true);
                    _ = model.Logits(hidden)[0, 0, 0].to(ScalarType.Float32).item<float>(); // waits for the result
                    ms.Add(clock.Elapsed.TotalMilliseconds);
                }
                return Stats.Median(ms);
            }
            Median(1); Median(sequences); // warm-up: JIT, kernels
            return (Median(1), Median(sequences));
        }
        finally
        {
            foreach (var c in caches) c.Dispose();
        }
    }
}
