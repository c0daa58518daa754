using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Tests.Model;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Generation;

/// <summary>Chunked full prefill (chunks against the growing cache) equals one unchunked pass, in f32.</summary>
public class ChunkedPrefillTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(40)]
    public void Chunked_prefill_gives_the_logits_and_cache_of_one_unchunked_pass(int chunk)
    {
        var c = TestModels.GqaLlama3;
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 31));
        int[] tokens = TestModels.RandomTokens(41, c.VocabSize, seed: 32);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var whole = new AttentionCache(c, capacity: 48, ScalarType.Float32);
        using var chunked = new AttentionCache(c, capacity: 48, ScalarType.Float32);

        var expected = CausalPrefill.Run(model, whole, tokens, chunkTokens: tokens.Length);
        var actual = CausalPrefill.Run(model, chunked, tokens, chunkTokens: chunk);
        // And both equal the last row of the cache-free causal forward.
        var plain = model.Forward(tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]))[0, tokens.Length - 1];

        double scale = expected.abs().max().item<float>();
        Assert.Equal([1L, 1L, c.VocabSize], actual.shape);
        Assert.True((actual - expected).abs().max().item<float>() / scale < 1e-5, $"chunk {chunk}: logits differ");
        Assert.True((plain - expected[0, 0]).abs().max().item<float>() / scale < 1e-5, "unchunked prefill differs from the plain forward");
        Assert.Equal(tokens.Length, chunked.Length);
        var (ke, ve) = whole.Export(0, tokens.Length);
        var (ka, va) = chunked.Export(0, tokens.Length);
        Assert.True((ke - ka).abs().max().item<float>() < 1e-5 && (ve - va).abs().max().item<float>() < 1e-5, $"chunk {chunk}: caches differ");
    }
}
