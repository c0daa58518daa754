using KVLink.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>Small random Llama models for tests: configs, seeded weights, and their double copies for the reference.</summary>
internal static class TestModels
{
    /// <summary>GQA (4 query heads over 2 kv heads) with llama3 rope scaling whose three bands all occur at head_dim 16.</summary>
    public static LlamaConfig GqaLlama3 => new()
    {
        HiddenSize = 64, IntermediateSize = 96, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        HeadDim = 16, VocabSize = 300, RmsNormEps = 1e-5, RopeTheta = 10000,
        RopeScaling = new Llama3RopeScaling(8, 1, 4, 8192), MaxPositionEmbeddings = 512,
        BosTokenId = 256, EosTokenIds = [257],
    };

    /// <summary>head_dim (24) different from hidden/heads (48/4 = 12), no GQA, default RoPE, tied embeddings.</summary>
    public static LlamaConfig WideHeadsTied => new()
    {
        HiddenSize = 48, IntermediateSize = 80, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 4,
        HeadDim = 24, VocabSize = 300, RmsNormEps = 1e-6, RopeTheta = 500000, MaxPositionEmbeddings = 512,
        TieWordEmbeddings = true, BosTokenId = 256, EosTokenIds = [257, 258],
    };

    /// <summary>Seeded random weights with Hugging Face names (no lm_head when tied), as float arrays.</summary>
    public static Dictionary<string, (long[] Shape, float[] Data)> RandomWeights(LlamaConfig c, int seed)
    {
        var rng = new Random(seed);
        var result = new Dictionary<string, (long[], float[])>();
        using var meta = new LlamaForCausalLM(c, ScalarType.Float32, META);
        foreach (var (name, p) in meta.named_parameters())
        {
            if (c.TieWordEmbeddings && name == "lm_head.weight") continue;
            long[] shape = p.shape;
            var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
            bool norm = name.EndsWith("norm.weight", StringComparison.Ordinal);
            double scale = name.Contains("embed_tokens") ? 1.0 : 1.0 / Math.Sqrt(shape[^1]);
            for (int i = 0; i < data.Length; i++)
                data[i] = norm ? (float)(1 + 0.1 * Gaussian(rng)) : (float)(scale * Gaussian(rng));
            result[name] = (shape, data);
        }
        return result;
    }

    /// <summary>A model whose parameters are set from <paramref name="weights"/> (converted to <paramref name="dtype"/>).</summary>
    public static LlamaForCausalLM Build(LlamaConfig c, Dictionary<string, (long[] Shape, float[] Data)> weights, ScalarType dtype = ScalarType.Float32)
    {
        var model = new LlamaForCausalLM(c, dtype);
        using var _ = no_grad();
        foreach (var (name, p) in model.named_parameters())
        {
            var (shape, data) = weights.TryGetValue(name, out var w) ? w : weights["model.embed_tokens.weight"];
            using var src = tensor(data, shape).to(dtype);
            p.copy_(src);
        }
        return model;
    }

    public static Dictionary<string, double[]> AsDoubles(Dictionary<string, (long[] Shape, float[] Data)> weights) =>
        weights.ToDictionary(kv => kv.Key, kv => kv.Value.Data.Select(f => (double)f).ToArray());

    /// <summary>Float32 logits of one decode step: <paramref name="token"/> at the position after the <paramref name="filled"/> positions of <paramref name="cache"/>.</summary>
    public static Tensor DecodeStep(LlamaForCausalLM model, AttentionCache cache, int filled, long token, DecodeRows decode = default)
    {
        long[] pos = [filled];
        var step = model.Step(pos, AttentionMasks.CausalOverCache(pos, filled + 1), cache, decode);
        return model.Forward(tensor(new long[] { token }, [1, 1]), step).to(ScalarType.Float32);
    }

    public static int[] RandomTokens(int count, int vocab, int seed)
    {
        var rng = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => rng.Next(vocab))];
    }

    public static double MaxRelativeError(Tensor actual, double[][] expected)
    {
        var a = actual.to(ScalarType.Float64).reshape(expected.Length, expected[0].Length);
        double num = 0, den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            var row = a[i].data<double>().ToArray();
            for (int j = 0; j < row.Length; j++)
            {
                num = Math.Max(num, Math.Abs(row[j] - expected[i][j]));
                den = Math.Max(den, Math.Abs(expected[i][j]));
            }
        }
        return num / den;
    }

    private static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
}
