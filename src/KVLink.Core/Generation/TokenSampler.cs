using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Generation;

/// <summary>Picks the next token from a logits row: greedy, or temperature / top-k / top-p sampling with a seeded RNG.</summary>
internal sealed class TokenSampler
{
    /// <summary>Temperatures below this decode greedily: sampling at them differs from greedy only on exact ties.</summary>
    public const float GreedyBelow = 1e-5f;

    private readonly GenerationOptions _options;
    private readonly Random _random;

    /// <summary>Creates a sampler; options are validated.</summary>
    public TokenSampler(GenerationOptions options)
    {
        options.Validate();
        _options = options;
        _random = options.Seed is { } seed ? new Random(seed) : new Random();
    }

    /// <summary>The next token for a [vocab] (or [1, 1, vocab]) logits tensor.</summary>
    public int Next(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var row = logits.reshape(-1);
        if (_options.Temperature < GreedyBelow) return (int)row.argmax().item<long>();

        // Shift by the maximum before dividing: logits/T overflows to infinity for tiny T and softmax then gives NaN,
        // whereas (logits - max)/T is at most 0, so the best token always keeps a finite weight.
        var f = row.to(ScalarType.Float32);
        using var temperature = _options.Temperature.ToScalar(); // held past the call (see HeldScalars)
        var scaled = (f - f.max()).div(temperature);
        int k = _options.TopK > 0 ? (int)Math.Min(_options.TopK, row.shape[0]) : (int)row.shape[0];
        // Sorting all of a 128k vocabulary each step is wasteful; topk returns the candidates in order.
        var (values, indices) = scaled.topk(k);
        float[] probs = nn.functional.softmax(values, 0).data<float>().ToArray();
        long[] ids = indices.data<long>().ToArray();

        int keep = probs.Length;
        if (_options.TopP < 1)
        {
            double cumulative = 0;
            for (int i = 0; i < probs.Length; i++)
            {
                cumulative += probs[i];
                if (cumulative >= _options.TopP) { keep = i + 1; break; }
            }
        }
        double total = 0;
        for (int i = 0; i < keep; i++) total += probs[i];
        double u = _random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            u -= probs[i];
            if (u <= 0) return (int)ids[i];
        }
        return (int)ids[keep - 1];
    }
}
