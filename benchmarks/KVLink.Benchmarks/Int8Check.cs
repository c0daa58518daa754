using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// Logit deviation of int8-weight decoding on a model whose int8 copies exist: the same cache, the same tokens, one
/// decode step each way for several steps (bf16's greedy token fed to both), compared logit by logit.
/// </summary>
internal static class Int8Check
{
    public static string Describe(BenchModel m, int context, int steps = 8)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var rng = new Random(5);
        int[] prompt = [.. Enumerable.Range(0, Math.Min(context, 1024)).Select(_ => rng.Next(300, 20000))];
        using var cache = new AttentionCache(m.Config, prompt.Length + steps + 1, m.Model.DType);
        var logits = CausalPrefill.Run(m.Model, cache, prompt);
        double worst = 0, sumRel = 0;
        int agree = 0;
        for (int s = 0; s < steps; s++)
        {
            using var inner = NewDisposeScope();
            long token = logits.argmax(-1).item<long>();
            long[] pos = [prompt.Length + s];
            var ids = tensor(new long[] { token }, [1, 1]);
            // bf16 first without writing the cache (a cache-free copy of this step would change the attention), then
            // int8 with the cache write; both read the same cache: bf16 with a copy of it.
            var mask = AttentionMasks.CausalOverCache(pos, (int)pos[0] + 1);
            Tensor bf, i8;
            using (var copy = new AttentionCache(m.Config, cache.Capacity, m.Model.DType))
            {
                var (k, v) = cache.Export(0, cache.Length);
                copy.Write(0, k, v);
                copy.Advance(cache.Length);
                bf = m.Model.Forward(ids, m.Model.Step(pos, mask, copy)).to(ScalarType.Float32);
            }
            i8 = m.Model.Forward(ids, m.Model.Step(pos, mask, cache, DecodeRows.All())).to(ScalarType.Float32);
            double rel = (bf - i8).abs().max().item<float>() / bf.abs().max().item<float>();
            worst = Math.Max(worst, rel);
            sumRel += rel;
            if (bf.argmax(-1).item<long>() == i8.argmax(-1).item<long>()) agree++;
            logits.Dispose();
            logits = bf.MoveToOuterDisposeScope();
        }
        return $"logit deviation over {steps} decode steps after a {prompt.Length}-token prompt: max |Δ|/max|logit| {worst:P2} (mean {sumRel / steps:P2}), top-1 agrees {agree}/{steps}";
    }
}
