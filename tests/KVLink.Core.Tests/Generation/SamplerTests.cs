using KVLink.Core.Generation;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Generation;

public class SamplerTests
{
    private static Tensor Logits(params float[] v) => tensor(v);

    [Fact]
    public void Greedy_picks_the_argmax()
    {
        using var l = Logits(0.1f, 2.5f, -1f, 2.4f);
        Assert.Equal(1, new TokenSampler(new GenerationOptions()).Next(l));
    }

    [Fact]
    public void Sampling_follows_the_softmax_distribution()
    {
        // p(1) = 3/4 at temperature 1; at temperature 0.5 it becomes 9/10.
        using var l = Logits(0f, MathF.Log(3));
        var s = new TokenSampler(new GenerationOptions { Temperature = 1, Seed = 7 });
        double share = Enumerable.Range(0, 4000).Count(_ => s.Next(l) == 1) / 4000.0;
        Assert.InRange(share, 0.72, 0.78);
        var cold = new TokenSampler(new GenerationOptions { Temperature = 0.5f, Seed = 7 });
        share = Enumerable.Range(0, 4000).Count(_ => cold.Next(l) == 1) / 4000.0;
        Assert.InRange(share, 0.88, 0.92);
    }

    [Fact]
    public void The_same_seed_gives_the_same_tokens()
    {
        using var l = Logits(Enumerable.Range(0, 50).Select(i => (float)Math.Sin(i)).ToArray());
        var o = new GenerationOptions { Temperature = 1.3f, TopK = 20, TopP = 0.9f, Seed = 42 };
        var a = new TokenSampler(o);
        var b = new TokenSampler(o);
        var c = new TokenSampler(o with { Seed = 43 });
        var sa = Enumerable.Range(0, 200).Select(_ => a.Next(l)).ToList();
        Assert.Equal(sa, Enumerable.Range(0, 200).Select(_ => b.Next(l)));
        Assert.NotEqual(sa, Enumerable.Range(0, 200).Select(_ => c.Next(l)));
    }

    [Fact]
    public void Top_k_and_top_p_restrict_the_candidates()
    {
        using var l = Logits(1f, 3f, 2f, 0f, 2.9f);
        var topK = new TokenSampler(new GenerationOptions { Temperature = 5, TopK = 2, Seed = 1 });
        Assert.All(Enumerable.Range(0, 500).Select(_ => topK.Next(l)), t => Assert.Contains(t, new[] { 1, 4 }));
        var greedyLike = new TokenSampler(new GenerationOptions { Temperature = 2, TopP = 1e-6f, Seed = 1 });
        Assert.All(Enumerable.Range(0, 100).Select(_ => greedyLike.Next(l)), t => Assert.Equal(1, t));
        // p over {1, 4, 2, 0, 3} at T=1: 0.39, 0.35, 0.14, ...: top-p 0.7 keeps exactly tokens 1 and 4.
        var nucleus = new TokenSampler(new GenerationOptions { Temperature = 1, TopP = 0.7f, Seed = 3 });
        var seen = Enumerable.Range(0, 1000).Select(_ => nucleus.Next(l)).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 4 }, seen);
    }

    [Theory]
    [InlineData(-0.1f, 0, 1f, "Temperature")]
    [InlineData(0f, -1, 1f, "TopK")]
    [InlineData(0f, 0, 0f, "TopP")]
    [InlineData(0f, 0, 1.5f, "TopP")]
    public void Invalid_options_name_the_option(float temperature, int topK, float topP, string name)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new TokenSampler(new GenerationOptions { Temperature = temperature, TopK = topK, TopP = topP }));
        Assert.Equal(name, e.ParamName);
        Assert.Equal("MaxNewTokens", Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { MaxNewTokens = 0 }.Validate()).ParamName);
    }
}
