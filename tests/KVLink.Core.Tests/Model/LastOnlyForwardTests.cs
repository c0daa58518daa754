using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>lastOnly skips the final layer's work for all but the last token: same last logits, same cache.</summary>
public class LastOnlyForwardTests
{
    [Fact]
    public void Last_only_forward_gives_the_last_row_and_the_same_cache()
    {
        var c = TestModels.GqaLlama3;
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 5));
        int[] tokens = TestModels.RandomTokens(9, c.VocabSize, seed: 6);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        long[] pos = [.. Enumerable.Range(0, tokens.Length).Select(i => (long)i)];
        using var cacheAll = new AttentionCache(c, capacity: 16, ScalarType.Float32);
        using var cacheLast = new AttentionCache(c, capacity: 16, ScalarType.Float32);
        var all = model.Forward(ids, model.Step(pos, AttentionMasks.CausalOverCache(pos, tokens.Length), cacheAll));
        var last = model.Forward(ids, model.Step(pos, AttentionMasks.CausalOverCache(pos, tokens.Length), cacheLast), lastOnly: true);

        Assert.Equal([1L, 1L, c.VocabSize], last.shape);
        double diff = (last[0, 0] - all[0, tokens.Length - 1]).abs().max().item<float>();
        Assert.True(diff < 1e-5, $"last logits differ by {diff:E2}");
        var (ka, va) = cacheAll.Export(0, tokens.Length);
        var (kl, vl) = cacheLast.Export(0, tokens.Length);
        Assert.True((ka - kl).abs().max().item<float>() < 1e-6 && (va - vl).abs().max().item<float>() < 1e-6, "caches differ");
    }
}
