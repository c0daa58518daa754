using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Native;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// The decode kernel over bf16 weights read in place, at every width this CPU runs (<see cref="DecodeGemv.Supported"/>):
/// the product is the float32 product of the same numbers, only decoding rows take it, and a bf16 model's decode step
/// through it stays within bf16 rounding of LibTorch's. Where the CPU has no vector kernel, bf16 decoding stays with LibTorch.
/// </summary>
public class DecodeGemvTests
{
    /// <summary>Every kernel this CPU runs, by name (the scalar loops always; the vector widths the CPU accelerates).</summary>
    public static TheoryData<string> Kernels => [.. DecodeGemv.Supported.Select(k => k.ToString())];

    public static TheoryData<int, int, int, int, int, bool, string> Products()
    {
        var data = new TheoryData<int, int, int, int, int, bool, string>();
        foreach (var k in DecodeGemv.Supported.Select(k => k.ToString()))
        {
            data.Add(67, 96, 0, 67, 1, true, k);    // rows not a multiple of 4: the scalar row tail runs too
            data.Add(300, 64, 40, 200, 5, true, k); // a row range (a fused weight's parts), one group of 4 token rows and a single one
            data.Add(522, 128, 8, 510, 16, true, k);
            data.Add(522, 128, 8, 510, 7, false, k); // on .NET's pool, where LibTorch's OpenMP team is not used
            data.Add(130, 36, 0, 130, 3, true, k);   // columns past the last whole vector at every width: the scalar column tail
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Products))]
    public void The_kernel_times_a_bf16_weight_equals_the_float32_product(int rows, int cols, int first, int count, int tokens, bool openMpTeam, string kernel)
    {
        using var scope = NewDisposeScope();
        var w = randn([rows, cols], generator: new Generator(11)).to(ScalarType.BFloat16);
        var x = randn([tokens, 1, cols], generator: new Generator(12)).to(ScalarType.BFloat16);
        var expected = nn.functional.linear(x.to(ScalarType.Float32), w.to(ScalarType.Float32).narrow(0, first, count)).to(ScalarType.BFloat16);
        Tensor y;
        OpenMpTeam.Enabled = openMpTeam;
        try
        {
            using var _ = DecodeGemv.Use(Enum.Parse<DecodeKernel>(kernel));
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
    public void The_kernel_is_the_widest_vector_width_this_CPU_accelerates_with_a_fused_multiply_add()
    {
        var expected = System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? DecodeKernel.Vector512
            : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported ? DecodeKernel.Vector256
            : System.Runtime.Intrinsics.Arm.AdvSimd.Arm64.IsSupported || (System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported) ? DecodeKernel.Vector128
            : DecodeKernel.Scalar;
        Assert.Equal(expected, DecodeGemv.Detected);
        Assert.Equal(expected, DecodeGemv.Kernel);
        Assert.Equal(DecodeGemv.Name(expected), DecodeGemv.KernelName);
        Assert.Equal(expected, DecodeGemv.Supported[0]);
        Assert.Equal(DecodeKernel.Scalar, DecodeGemv.Supported[^1]);
        Assert.Equal(expected != DecodeKernel.Scalar, DecodeGemv.Vectorized(2048));
        // A kernel the CPU lacks is refused by name, never run; a narrower one is used on this thread only.
        foreach (var missing in Enum.GetValues<DecodeKernel>().Where(k => !DecodeGemv.IsSupported(k)))
            Assert.Contains(DecodeGemv.Name(missing), Assert.Throws<NotSupportedException>(() => DecodeGemv.Use(missing)).Message);
        using (DecodeGemv.Use(DecodeKernel.Scalar))
        {
            Assert.False(DecodeGemv.Vectorized(2048));
            DecodeKernel other = DecodeKernel.Scalar;
            var thread = new Thread(() => other = DecodeGemv.Kernel);
            thread.Start();
            thread.Join();
            Assert.Equal(expected, other);
        }
        Assert.Equal(expected, DecodeGemv.Kernel);
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void Only_the_marked_decoding_rows_use_the_kernel_and_other_weights_keep_LibTorch(string kernel)
    {
        using var scope = NewDisposeScope();
        using var use = DecodeGemv.Use(Enum.Parse<DecodeKernel>(kernel));
        bool vector = DecodeGemv.Vectorized(128);
        var w = randn([64, 128], generator: new Generator(13)).to(ScalarType.BFloat16);
        var mixed = randn([1, 7, 128], generator: new Generator(14)).to(ScalarType.BFloat16);
        Tensor Full(Tensor xs) => nn.functional.linear(xs, w);

        // 3 decoding rows, then a 4-row prompt chunk: the kernel for the 3 and LibTorch's GEMM for the 4, each compared
        // with the same product alone (a 4-row GEMM with a 4-row GEMM: LibTorch promises no bits across row counts).
        // Without a vector kernel, all 7 rows stay with LibTorch's GEMM.
        Tensor split, head;
        long products = DecodeGemv.ProductsOnThisThread;
        var three = new DecodeRows(3, Int8: false);
        split = three.Product(mixed, w, null, 0, 64, Full);
        head = three.Product(mixed.narrow(1, 0, 3), w, null, 0, 64, Full);
        Assert.Equal(products + (vector ? 2 : 0), DecodeGemv.ProductsOnThisThread);
        if (vector)
        {
            Assert.Equal(0f, (split.narrow(1, 3, 4) - Full(mixed.narrow(1, 3, 4))).abs().max().to(ScalarType.Float32).item<float>());
            Assert.Equal(0f, (split.narrow(1, 0, 3) - head).abs().max().to(ScalarType.Float32).item<float>());
        }
        else Assert.Equal(0f, (split - Full(mixed)).abs().max().to(ScalarType.Float32).item<float>());

        // More decoding rows than the kernel serves with bf16 weights: LibTorch's GEMM, whose matrix units win there.
        var five = randn([5, 1, 128], generator: new Generator(17)).to(ScalarType.BFloat16);
        products = DecodeGemv.ProductsOnThisThread;
        var all = DecodeRows.All(int8: false);
        Assert.Equal(0f, (all.Product(five, w, null, 0, 64, Full) - Full(five)).abs().max().to(ScalarType.Float32).item<float>());
        // Outside a decode step, and for a float32 weight: LibTorch alone.
        Assert.Equal(0f, (default(DecodeRows).Product(mixed, w, null, 0, 64, Full) - Full(mixed)).abs().max().to(ScalarType.Float32).item<float>());
        var wf = w.to(ScalarType.Float32);
        var xf = mixed.to(ScalarType.Float32);
        Assert.Equal(0f, (all.Product(xf, wf, null, 0, 64, xs => nn.functional.linear(xs, wf)) - nn.functional.linear(xf, wf)).abs().max().item<float>());
        Assert.Equal(products, DecodeGemv.ProductsOnThisThread);

        // Rows of any width (here 20 columns, not a whole number of vectors at any width) take the kernel where it runs.
        var narrow = randn([8, 20], generator: new Generator(15)).to(ScalarType.BFloat16);
        var x20 = randn([1, 1, 20], generator: new Generator(16)).to(ScalarType.BFloat16);
        Tensor y20;
        y20 = all.Product(x20, narrow, null, 0, 8, xs => nn.functional.linear(xs, narrow));
        Assert.Equal(products + (vector ? 1 : 0), DecodeGemv.ProductsOnThisThread);
        var reference = nn.functional.linear(x20.to(ScalarType.Float32), narrow.to(ScalarType.Float32));
        Assert.True(((y20.to(ScalarType.Float32) - reference).abs() <= reference.abs() / 128 + 1e-6).all().item<bool>(), "a 20-wide row is more than one bf16 step off");
    }

    [Theory]
    [MemberData(nameof(Kernels))]
    public void A_bf16_models_decode_step_through_the_kernel_stays_within_bf16_rounding_and_prompts_are_untouched(string kernel)
    {
        var c = TestModels.GqaLlama3;
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 43), ScalarType.BFloat16);
        int[] prompt = TestModels.RandomTokens(12, c.VocabSize, seed: 44);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var use = DecodeGemv.Use(Enum.Parse<DecodeKernel>(kernel));
        using var cacheA = new AttentionCache(c, 16, ScalarType.BFloat16);
        using var cacheB = new AttentionCache(c, 16, ScalarType.BFloat16);
        var a = CausalPrefill.Run(model, cacheA, prompt);
        var b = CausalPrefill.Run(model, cacheB, prompt);
        Assert.Equal(0f, (a - b).abs().max().to(ScalarType.Float32).item<float>()); // prompts never take the kernel

        long products = DecodeGemv.ProductsOnThisThread;
        var libTorch = TestModels.DecodeStep(model, cacheA, prompt.Length, token: 7);
        Assert.Equal(products, DecodeGemv.ProductsOnThisThread); // no decoding rows: LibTorch's GEMMs
        var kernelLogits = TestModels.DecodeStep(model, cacheB, prompt.Length, token: 7, DecodeRows.All(int8: false));
        // With a vector kernel, every projection of both layers (q/k/v, o, gate/up, down) and the vocabulary head took
        // it; with none, the decode step stays with LibTorch's GEMMs.
        Assert.Equal(products + (DecodeGemv.Vectorized(c.HiddenSize) ? 2 * 4 + 1 : 0), DecodeGemv.ProductsOnThisThread);
        // Float32 sums of the same products, rounded to bf16: the bound allows another order of the sums.
        double diff = (kernelLogits - libTorch).abs().max().item<float>(), scale = libTorch.abs().max().item<float>();
        Assert.True(diff / scale < 0.02, $"the kernel's decode logits deviate by {diff / scale:P2} of the largest logit");
        Assert.Equal(libTorch.argmax(-1).item<long>(), kernelLogits.argmax(-1).item<long>());
    }
}
