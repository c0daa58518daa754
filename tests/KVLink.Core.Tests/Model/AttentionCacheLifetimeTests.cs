using KVLink.Core.Model;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// A cache owns its tensors: one rented inside a dispose scope (a sequence now starts inside one, so that no temporary
/// of a start can be finalized while LibTorch reads it) outlives the scope.
/// </summary>
public class AttentionCacheLifetimeTests
{
    private static LlamaForCausalLM Model() => new(SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 2, heads: 2, kvHeads: 1));

    private static Tensor Ones(LlamaForCausalLM m, int length) => ones([m.Config.NumHiddenLayers, m.Config.NumKeyValueHeads, length, m.Config.HeadDim]);

    [Theory]
    [InlineData(false)] // a fresh buffer
    [InlineData(true)]  // a pooled buffer, cleared for its new owner
    public void A_cache_rented_inside_a_dispose_scope_outlives_the_scope(bool pooled)
    {
        using var model = Model();
        if (pooled) AttentionCache.Rent(model, 24).Dispose(); // its buffer goes to the pool
        AttentionCache cache;
        using (NewDisposeScope()) cache = AttentionCache.Rent(model, 20);
        Assert.Equal(0, model.CachePool.Bytes); // a pooled buffer is the cache's now

        using (NewDisposeScope())
        {
            cache.Write(0, Ones(model, 20), Ones(model, 20));
            var (keys, values) = cache.Export(0, 20);
            Assert.Equal(1f, keys.min().item<float>());
            Assert.Equal(1f, values.min().item<float>());
        }
        cache.Dispose();
        Assert.True(model.CachePool.Bytes > 0, "the buffer goes back to the pool, whole");
        using var again = AttentionCache.Rent(model, 20);
        using (NewDisposeScope()) Assert.Equal(0f, again.View(1, 20).Keys.abs().max().item<float>()); // cleared for its new owner
    }
}
