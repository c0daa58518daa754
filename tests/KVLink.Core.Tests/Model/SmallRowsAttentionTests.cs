using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// The float32 attention kernel for a link pass's few hundred rows over thousands of cached keys
/// (<see cref="SmallRowsAttention"/>), at every vector width this CPU runs: it equals LibTorch's SDPA under the same
/// additive mask within float32 rounding, reads keys and values through views of a larger cache, and steps aside where
/// it is not meant to serve.
/// </summary>
public class SmallRowsAttentionTests
{
    public static TheoryData<int, int, int, int, string> Shapes()
    {
        var data = new TheoryData<int, int, int, int, string>();
        foreach (var k in DecodeGemv.Supported.Select(k => k.ToString()))
        {
            data.Add(8, 4, 62, 5056, k);  // KVLink5 over 10 documents at 5k: 248 folded rows per kv head
            data.Add(3, 1, 23, 1101, k);  // rows a multiple of neither 4 nor 3 (the last blocks overlap), keys not a multiple of the key block
            data.Add(2, 2, 2, 1024, k);   // the fewest rows and keys it takes
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void The_kernel_equals_SDPA_under_a_link_passs_mask(int kvHeads, int g, int tokens, int keys, string kernel)
    {
        using var scope = NewDisposeScope();
        using var use = DecodeGemv.Use(Enum.Parse<DecodeKernel>(kernel));
        const int D = 64;
        var gen = new Generator(31);
        var q = randn([1, kvHeads, g * tokens, D], generator: gen);
        // Keys and values as the attention cache holds them: views of the first `keys` positions of a larger buffer.
        var cacheK = randn([1, kvHeads, keys + 300, D], generator: gen).mul_(2);
        var cacheV = randn([1, kvHeads, keys + 300, D], generator: gen);
        var (k, v) = (cacheK.narrow(2, 0, keys), cacheV.narrow(2, 0, keys));
        // A link pass's rule: causal over the cache, and each token blind to a band of earlier positions (other documents).
        long[] positions = [.. Enumerable.Range(keys - tokens, tokens).Select(i => (long)i)];
        var mask = AttentionMasks.CausalOverCache(positions, keys);
        for (int t = 0; t < tokens; t += 2) mask[t, TensorIndex.Slice(t * 7, t * 7 + 200)] = tensor(false);
        var folded = GroupedAttention.Fold(mask, g, ScalarType.Float32);

        Assert.True(SmallRowsAttention.Serves(q, k, v, folded) == (kernel != nameof(DecodeKernel.Scalar)));
        Tensor expected;
        using (SmallRowsAttention.Off()) expected = nn.functional.scaled_dot_product_attention(q, k, v, folded);
        long before = SmallRowsAttention.CallsOnThisThread;
        var o = GroupedAttention.Attend(q.reshape(1, kvHeads * g, tokens, D), k, v, folded, g).reshape(q.shape);

        Assert.Equal(before + (kernel == nameof(DecodeKernel.Scalar) ? 0 : 1), SmallRowsAttention.CallsOnThisThread);
        double diff = (o - expected).abs().max().item<float>();
        Assert.True(diff <= 2e-5, $"{kernel}: differs from SDPA by {diff:E2}");
    }

    [Fact]
    public void Other_dtypes_batches_few_keys_and_autograd_stay_with_SDPA()
    {
        using var scope = NewDisposeScope();
        var q = randn([1, 2, 8, 64]);
        var k = randn([1, 2, 2048, 64]);
        var v = randn([1, 2, 2048, 64]);
        var mask = zeros([8, 2048]);
        bool vector = DecodeGemv.Kernel != DecodeKernel.Scalar;
        Assert.Equal(vector, SmallRowsAttention.Serves(q, k, v, mask));
        Assert.False(SmallRowsAttention.Serves(q.to(ScalarType.BFloat16), k.to(ScalarType.BFloat16), v.to(ScalarType.BFloat16), mask.to(ScalarType.BFloat16)));
        Assert.False(SmallRowsAttention.Serves(q.expand(2, 2, 8, 64), k.expand(2, 2, 2048, 64), v.expand(2, 2, 2048, 64), mask)); // a batch
        Assert.False(SmallRowsAttention.Serves(q, k.narrow(2, 0, 512), v.narrow(2, 0, 512), mask.narrow(1, 0, 512))); // few keys
        Assert.False(SmallRowsAttention.Serves(randn([1, 2, SmallRowsAttention.MaxRows + 4, 64]), k, v, zeros([SmallRowsAttention.MaxRows + 4, 2048])));
        Assert.False(SmallRowsAttention.Serves(q.clone().requires_grad_(), k, v, mask)); // training
        Assert.False(SmallRowsAttention.Serves(q, k, v, zeros([8, 4096]).narrow(1, 0, 2048))); // a mask that is not contiguous
    }
}
