using KVLink.Core.Model;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>A finished sequence's cache buffers serve the next one: cleared, never shared, within the pool's limits.</summary>
public class AttentionCachePoolTests
{
    private static LlamaForCausalLM Model() => new(SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 2, heads: 2, kvHeads: 1));

    private static Tensor Ones(LlamaForCausalLM m, int length) => ones([m.Config.NumHiddenLayers, m.Config.NumKeyValueHeads, length, m.Config.HeadDim]);

    [Fact]
    public void A_returned_buffer_serves_the_next_cache_cleared_and_a_longer_one_gets_its_own()
    {
        using var model = Model();
        var first = AttentionCache.Rent(model, 40);
        first.Write(0, Ones(model, 40), Ones(model, 40));
        first.Advance(40);
        Assert.Equal(0, model.CachePool.Bytes);
        first.Dispose();
        first.Dispose(); // a second Dispose gives nothing back twice
        long kept = model.CachePool.Bytes;
        Assert.Equal(2L * 2 * 1 * 40 * 16 * 4, kept); // keys and values, [2 layers, 1, 1 kv head, 40, 16] float32

        // A longer cache cannot use it; a shorter one does, and reads zeros where the first one wrote ones.
        using (var longer = AttentionCache.Rent(model, 41)) Assert.Equal(kept, model.CachePool.Bytes);
        using var shorter = AttentionCache.Rent(model, 30);
        Assert.Equal(2L * 2 * 41 * 16 * 4, model.CachePool.Bytes); // the 40-position buffer is out; the 41-position one came back
        Assert.Equal(30, shorter.Capacity);
        var (keys, values) = shorter.View(0, 30);
        Assert.Equal(0f, keys.abs().max().item<float>());
        Assert.Equal(0f, values.abs().max().item<float>());

        // Its positions are its own: a write fills the first 30 positions of the kept buffer, nothing beyond.
        shorter.Write(0, Ones(model, 30), Ones(model, 30));
        var (k2, _) = shorter.Export(0, 30);
        Assert.Equal(1f, k2.min().item<float>());
    }

    [Fact]
    public void The_pool_keeps_at_most_its_buffer_count_and_frees_the_smallest_then_everything_with_the_model()
    {
        var model = Model();
        var caches = Enumerable.Range(1, AttentionCachePool.MaxBuffers + 2).Select(i => AttentionCache.Rent(model, 10 * i)).ToList();
        foreach (var c in caches) c.Dispose();
        long bytesPerPosition = 2L * 2 * 1 * 16 * 4;
        long largest = Enumerable.Range(3, AttentionCachePool.MaxBuffers).Sum(i => 10L * i) * bytesPerPosition;
        Assert.Equal(largest, model.CachePool.Bytes); // the two smallest (10 and 20 positions) were freed
        model.Dispose();
        Assert.Equal(0, model.CachePool.Bytes);
    }

    /// <summary>
    /// A cache owns its tensors: one rented inside a dispose scope (a sequence starts inside one, so that no temporary of a
    /// start can be finalized while LibTorch reads it) outlives the scope.
    /// </summary>
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
