using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// The decode kernel over bf16 weights read in place: the product is the float32 product of the same numbers, only
/// decoding rows take it, and a bf16 model's decode step through it stays within bf16 rounding of LibTorch's.
/// </summary>
public class DecodeGemvTests
{
    [Theory]
    [InlineData(67, 96, 0, 67, 1, true)]    // rows not a multiple of 4: the scalar tail runs too
    [InlineData(300, 64, 40, 200, 5, true)] // a row range (a fused weight's parts), one group of 4 token rows and a single one
    [InlineData(522, 128, 8, 510, 16, true)]
    [InlineData(522, 128, 8, 510, 7, false)] // on .NET's pool, where LibTorch's OpenMP team is not used
    public void The_kernel_times_a_bf16_weight_equals_the_float32_product(int rows, int cols, int first, int count, int tokens, bool openMpTeam)
    {
        using var scope = NewDisposeScope();
        var w = randn([rows, cols], generator: new Generator(11)).to(ScalarType.BFloat16);
        var x = randn([tokens, 1, cols], generator: new Generator(12)).to(ScalarType.BFloat16);
        var expected = nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32).narrow(0, first, count)).to(ScalarType.BFloat16);
        Tensor y;
        OpenMpTeam.Enabled = openMpTeam;
        try
        {
            unsafe
            {
                fixed (byte* wp = w.bytes) y = DecodeGemv.Multiply<Bf16Format>(wp, null, cols, x, first, count);
            }
        }
        finally { OpenMpTeam.Enabled = true; }

        Assert.Equal([(long)tokens, 1L, (long)count], y.shape);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        // Both round the same float32 sums to bf16: at most one bf16 step apart where the sums' order moves a rounding.
        var diff = (y.to(ScalarType.Float32) - expected.to(ScalarType.Float32)).abs();
        var ulp = expected.to(ScalarType.Float32).abs() / 128 + 1e-6;
        Assert.True((diff <= ulp).all().item<bool>(), $"an output is more than one bf16 step off (max |diff| {diff.max().item<float>():E2})");
    }

    [Fact]
    public void Only_the_marked_decoding_rows_use_the_kernel_and_other_weights_keep_LibTorch()
    {
        using var scope = NewDisposeScope();
        var w = randn([64, 128], generator: new Generator(13)).to(ScalarType.BFloat16);
        var mixed = randn([1, 7, 128], generator: new Generator(14)).to(ScalarType.BFloat16);
        Tensor Full(Tensor xs) => nn.functional.linear(xs, w);

        // 3 decoding rows, then a 4-row prompt chunk: the kernel for the 3, LibTorch's GEMM (bit for bit) for the rest.
        Tensor split, head;
        using (DecodeRows.Mark(rows: 3, int8: false))
        {
            split = DecodeRows.Product(mixed, w, null, 0, 64, Full);
            head = DecodeRows.Product(mixed.narrow(1, 0, 3), w, null, 0, 64, Full);
        }
        Assert.Equal(0f, (split.narrow(1, 3, 4) - Full(mixed.narrow(1, 3, 4))).abs().max().to(ScalarType.Float32).item<float>());
        Assert.Equal(0f, (split.narrow(1, 0, 3) - head).abs().max().to(ScalarType.Float32).item<float>());

        // More decoding rows than the kernel serves with bf16 weights: LibTorch's GEMM, whose matrix units win there.
        var five = randn([5, 1, 128], generator: new Generator(17)).to(ScalarType.BFloat16);
        long products = DecodeGemv.ProductsOnThisThread;
        using (DecodeRows.Mark(int8: false))
            Assert.Equal(0f, (DecodeRows.Product(five, w, null, 0, 64, Full) - Full(five)).abs().max().to(ScalarType.Float32).item<float>());
        Assert.Equal(products, DecodeGemv.ProductsOnThisThread);

        // Outside a decode step, for a float32 weight, and for rows not a multiple of 16 wide: LibTorch alone.
        Assert.Equal(0f, (DecodeRows.Product(mixed, w, null, 0, 64, Full) - Full(mixed)).abs().max().to(ScalarType.Float32).item<float>());
        var wf = w.to(ScalarType.Float32);
        var xf = mixed.to(ScalarType.Float32);
        using (DecodeRows.Mark(int8: false))
            Assert.Equal(0f, (DecodeRows.Product(xf, wf, null, 0, 64, xs => nn.functional.linear(xs, wf)) - nn.functional.linear(xf, wf)).abs().max().item<float>());
        var narrow = randn([8, 20], generator: new Generator(15)).to(ScalarType.BFloat16);
        var x20 = randn([1, 1, 20], generator: new Generator(16)).to(ScalarType.BFloat16);
        using (DecodeRows.Mark(int8: false))
            Assert.Equal(0f, (DecodeRows.Product(x20, narrow, null, 0, 8, xs => nn.functional.linear(xs, narrow)) - nn.functional.linear(x20, narrow)).abs().max().to(ScalarType.Float32).item<float>());
    }

    [Fact]
    public void A_bf16_models_decode_step_through_the_kernel_stays_within_bf16_rounding_and_prompts_are_untouched()
    {
        var c = TestModels.GqaLlama3;
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 43), ScalarType.BFloat16);
        int[] prompt = TestModels.RandomTokens(12, c.VocabSize, seed: 44);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var cacheA = new AttentionCache(c, 16, ScalarType.BFloat16);
        using var cacheB = new AttentionCache(c, 16, ScalarType.BFloat16);
        var a = CausalPrefill.Run(model, cacheA, prompt);
        var b = CausalPrefill.Run(model, cacheB, prompt);
        Assert.Equal(0f, (a - b).abs().max().to(ScalarType.Float32).item<float>()); // prompts never take the kernel

        long products = DecodeGemv.ProductsOnThisThread;
        var libTorch = TestModels.DecodeStep(model, cacheA, prompt.Length, token: 7);
        Assert.Equal(products, DecodeGemv.ProductsOnThisThread); // unmarked: LibTorch's GEMMs
        Tensor kernel;
        using (DecodeRows.Mark(int8: false)) kernel = TestModels.DecodeStep(model, cacheB, prompt.Length, token: 7);
        // Every projection of both layers (q/k/v, o, gate/up, down) and the vocabulary head took the kernel.
        Assert.Equal(products + 2 * 4 + 1, DecodeGemv.ProductsOnThisThread);
        // Float32 sums of the same products, rounded to bf16 (on this CPU LibTorch's one-row product sums in the same
        // order and the logits come out bit-identical; the bound allows another order).
        double diff = (kernel - libTorch).abs().max().item<float>(), scale = libTorch.abs().max().item<float>();
        Assert.True(diff / scale < 0.02, $"the kernel's decode logits deviate by {diff / scale:P2} of the largest logit");
        Assert.Equal(libTorch.argmax(-1).item<long>(), kernel.argmax(-1).item<long>());
    }
}
