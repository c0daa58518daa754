using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// A step's rows attend run by run over the key prefix they may see (<see cref="KeyPrefixChunks"/>): the plan covers every
/// row once with every key it needs, and a split forward equals one attention call over all keys.
/// </summary>
public class KeyPrefixChunksTests
{
    /// <summary>KVLink5's link pass at 5k: 10 documents of 500 tokens, 5 link rows after each, then 12 question rows.</summary>
    private static int[] LinkPassKeys()
    {
        var keys = new List<int>();
        int position = 20;
        for (int d = 0; d < 10; d++)
        {
            position += 500;
            for (int l = 0; l < 5; l++) keys.Add(++position);
        }
        for (int q = 0; q < 12; q++) keys.Add(++position);
        return [.. keys];
    }

    private static double Cost(ReadOnlySpan<int> keys, KeyPrefixChunks.Chunk[] plan, double flopsPerRowKey) =>
        plan.Sum(c => (double)c.Count * c.Keys + KeyPrefixChunks.CallCostFlops / flopsPerRowKey);

    [Fact]
    public void A_link_pass_is_split_into_runs_that_cover_every_row_once_with_every_key_it_needs()
    {
        int[] keys = LinkPassKeys();
        double flops = 4.0 * 32 * 64; // the 1B shape
        var plan = KeyPrefixChunks.Plan(keys, flops);

        Assert.NotNull(plan);
        Assert.True(plan.Length >= 3, $"{plan.Length} runs");
        int next = 0;
        foreach (var c in plan)
        {
            Assert.Equal(next, c.Start);
            for (int r = c.Start; r < c.Start + c.Count; r++) Assert.True(keys[r] <= c.Keys, $"row {r} needs {keys[r]} keys, its run has {c.Keys}");
            next += c.Count;
        }
        Assert.Equal(keys.Length, next);
        double single = keys.Length * (double)keys.Max() + KeyPrefixChunks.CallCostFlops / flops;
        double split = Cost(keys, plan, flops);
        Assert.True(split < 0.75 * single, $"split {split:F0} against one call {single:F0}");
    }

    [Fact]
    public void Rows_that_see_the_same_keys_stay_one_call()
    {
        Assert.Null(KeyPrefixChunks.Plan(Enumerable.Repeat(5240, 62).ToArray(), 4.0 * 32 * 64));
        Assert.Null(KeyPrefixChunks.Plan([700], 4.0 * 32 * 64));
        // A small step of a small model: the saving is less than one more call costs.
        Assert.Null(KeyPrefixChunks.Plan([600, 601, 1200, 1201], 4.0 * 4 * 32));
    }

    [Fact]
    public void A_long_prefill_plans_about_the_triangle()
    {
        int[] keys = [.. Enumerable.Range(1, 5056)];
        double flops = 4.0 * 32 * 64;
        var plan = KeyPrefixChunks.Plan(keys, flops)!;
        double rectangle = 5056.0 * 5056;
        Assert.True(Cost(keys, plan, flops) < 0.6 * rectangle, $"{Cost(keys, plan, flops):F0} of {rectangle:F0}");
    }

    [Theory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.BFloat16, 2e-2)]
    public void A_split_link_pass_equals_one_attention_call_over_all_keys(ScalarType dtype, double tolerance)
    {
        var c = TestModels.GqaLlama3 with { MaxPositionEmbeddings = 2048 };
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 11), dtype);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        // Six "documents" of 300 cached positions each, 8 new rows after each, then 8 question rows: a link pass.
        var positions = new List<long>();
        for (int d = 0; d < 6; d++) positions.AddRange(Enumerable.Range(d * 308 + 300, 8).Select(p => (long)p));
        positions.AddRange(Enumerable.Range(6 * 308, 8).Select(p => (long)p));
        long[] pos = [.. positions];
        int keyLength = (int)pos.Max() + 1;
        var generator = new Generator(7);
        var (k, v) = (randn([c.NumHiddenLayers, c.NumKeyValueHeads, keyLength, c.HeadDim], generator: generator).to(dtype),
                      randn([c.NumHiddenLayers, c.NumKeyValueHeads, keyLength, c.HeadDim], generator: generator).to(dtype));
        var ids = tensor(TestModels.RandomTokens(pos.Length, c.VocabSize, seed: 8).Select(t => (long)t).ToArray(), [1, pos.Length]);

        Tensor Run(AttentionCache cache)
        {
            cache.Write(0, k, v);
            return model.Forward(ids, model.Step(pos, AttentionMasks.CausalOverCache(pos, keyLength), cache)).to(ScalarType.Float32);
        }
        using var splitCache = new AttentionCache(c, keyLength, dtype);
        using var oneCache = new AttentionCache(c, keyLength, dtype);
        long before = KeyPrefixChunks.SplitOnThisThread;
        var split = Run(splitCache);
        long splits = KeyPrefixChunks.SplitOnThisThread - before;
        Tensor one;
        using (KeyPrefixChunks.Off()) one = Run(oneCache);

        Assert.Equal(c.NumHiddenLayers, splits); // every layer attended run by run
        Assert.Equal(before + splits, KeyPrefixChunks.SplitOnThisThread); // and the reference in one call
        double diff = (split - one).abs().max().item<float>(), scale = one.abs().max().item<float>();
        Assert.True(diff <= tolerance * scale, $"logits differ by {diff:E2} (largest {scale:E2})");
        var (ks, vs) = splitCache.Export(0, keyLength);
        var (ko, vo) = oneCache.Export(0, keyLength);
        Assert.True((ks.to(ScalarType.Float32) - ko.to(ScalarType.Float32)).abs().max().item<float>() <= tolerance * 10, "keys differ");
        Assert.True((vs.to(ScalarType.Float32) - vo.to(ScalarType.Float32)).abs().max().item<float>() <= tolerance * 10, "values differ");
    }
}
