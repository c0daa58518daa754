using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>Both attention kernels (fused SDPA, and matmul + f32 softmax + matmul) give the same result under the step's folded mask.</summary>
public class GroupedAttentionTests
{
    [Fact]
    public void The_matmul_kernel_equals_sdpa_and_the_folded_mask_equals_a_per_head_boolean_one()
    {
        using var scope = NewDisposeScope();
        int g = 3, t = 5, s = 9, d = 8;
        var q = randn([1, 2 * g, t, d], generator: new Generator(1));
        var k = randn([1, 2, s, d], generator: new Generator(2));
        var v = randn([1, 2, s, d], generator: new Generator(3));
        long[] pos = [.. Enumerable.Range(s - t, t).Select(i => (long)i)];
        var mask = AttentionMasks.CausalOverCache(pos, s);
        var folded = GroupedAttention.Fold(mask, g, ScalarType.Float32);

        var sdpa = GroupedAttention.Attend(q, k, v, folded, g);
        var viaMatmul = GroupedAttention.Matmul(q.reshape(1, 2, g * t, d), k, v, folded).view(1, 2 * g, t, d);
        // The reference: every query head against its kv head, repeated, with the boolean mask.
        var kr = k.repeat_interleave(g, 1);
        var vr = v.repeat_interleave(g, 1);
        var expected = nn.functional.scaled_dot_product_attention(q, kr, vr, mask);

        Assert.True((sdpa - expected).abs().max().item<float>() < 1e-5, "SDPA with the folded mask differs");
        Assert.True((viaMatmul - expected).abs().max().item<float>() < 1e-5, "the matmul kernel differs");
    }
}
