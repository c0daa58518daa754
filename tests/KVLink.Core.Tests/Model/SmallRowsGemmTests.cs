using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// The float32 kernel for a few dozen token rows (<see cref="SmallRowsGemm"/>), at every vector width this CPU runs: it
/// equals LibTorch's product within float32 rounding (and steps aside for the scalar tier), serves only the rows it is meant for, and a float32 forward of a
/// link-pass-sized step through it equals LibTorch's.
/// </summary>
public class SmallRowsGemmTests
{
    public static TheoryData<int, int, int, int, int, string> Products()
    {
        var data = new TheoryData<int, int, int, int, int, string>();
        // Every kernel this CPU runs, the scalar loops included (there the product must stay with LibTorch).
        foreach (var k in DecodeGemv.Supported.Select(k => k.ToString()))
        {
            // Every weight at least SmallRowsGemm.MinWeightElements, which smaller ones stay below (LibTorch's).
            data.Add(4200, 64, 0, 4200, 17, k);    // the fewest rows; tokens not a multiple of 4: the last block overlaps
            data.Add(2101, 128, 40, 2000, 62, k);  // a row range (a fused weight's parts), weight rows not a multiple of 3
            data.Add(2100, 130, 0, 2100, 128, k);  // columns past the last whole vector at every width: the scalar column tail
            data.Add(2000, 256, 0, 2000, 40, k);   // enough weight rows for both threads
            data.Add(200, 2 * SmallRowsGemm.Piece + 553, 7, 190, 62, k); // rows long enough for passes of Piece columns, the last with a column tail
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Products))]
    public void The_kernel_equals_LibTorchs_float32_product(int rows, int cols, int first, int count, int tokens, string kernel)
    {
        using var scope = NewDisposeScope();
        using var use = DecodeGemv.Use(Enum.Parse<DecodeKernel>(kernel));
        var w = randn([rows, cols], generator: new Generator(21));
        var x = randn([1, tokens, cols], generator: new Generator(22));
        var expected = nn.functional.linear(x, w.narrow(0, first, count));
        long before = SmallRowsGemm.ProductsOnThisThread;
        var y = SmallRowsGemm.Linear(x, w, first, count);

        Assert.Equal(before + (kernel == nameof(DecodeKernel.Scalar) ? 0 : 1), SmallRowsGemm.ProductsOnThisThread);
        Assert.Equal(expected.shape, y.shape);
        double diff = (y - expected).abs().max().item<float>();
        Assert.True(diff <= 1e-5 * Math.Sqrt(cols), $"{kernel}: differs by {diff:E2}");
    }

    [Fact]
    public void Other_row_counts_dtypes_and_autograd_stay_with_LibTorch()
    {
        using var scope = NewDisposeScope();
        var w = randn([2048, 128]);
        long before = SmallRowsGemm.ProductsOnThisThread;
        SmallRowsGemm.Linear(randn([SmallRowsGemm.MinRows - 1, 128]), w);
        SmallRowsGemm.Linear(randn([SmallRowsGemm.MaxRows + 1, 128]), w);
        SmallRowsGemm.Linear(randn([40, 128]).to(ScalarType.BFloat16), w.to(ScalarType.BFloat16));
        SmallRowsGemm.Linear(randn([40, 32]), randn([64, 32])); // a small weight
        using (var grad = enable_grad())
        {
            var trained = randn([2048, 128]).requires_grad_(true);
            SmallRowsGemm.Linear(randn([40, 128]), trained).sum().backward();
            Assert.NotNull(trained.grad);
        }
        // An input whose features do not match the weight's is LibTorch's shape error, never read as other rows (64 x 256 = 128 x 128).
        Assert.ThrowsAny<Exception>(() => SmallRowsGemm.Linear(randn([64, 256]), w));
        using (SmallRowsGemm.Off()) SmallRowsGemm.Linear(randn([40, 128]), w);
        Assert.Equal(before, SmallRowsGemm.ProductsOnThisThread);
        if (DecodeGemv.Detected != DecodeKernel.Scalar)
        {
            SmallRowsGemm.Linear(randn([40, 128]), w);
            Assert.Equal(before + 1, SmallRowsGemm.ProductsOnThisThread);
        }
    }

    [Fact]
    public void A_float32_forward_of_a_link_pass_sized_step_equals_LibTorchs()
    {
        // Large enough that gate/up (2048 x 256), down (256 x 1024) and the vocabulary head (1100 x 256) reach the kernel;
        // q/k/v (512 x 256) and o (256 x 256) stay below SmallRowsGemm.MinWeightElements.
        var c = TestModels.GqaLlama3 with { HiddenSize = 256, IntermediateSize = 1024, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 64, VocabSize = 1100 };
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 31));
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        int[] tokens = TestModels.RandomTokens(40, c.VocabSize, seed: 32);
        var ids = tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        long[] pos = [.. Enumerable.Range(0, tokens.Length).Select(i => (long)i)];
        Tensor Run()
        {
            using var cache = new AttentionCache(c, capacity: 64, ScalarType.Float32);
            return model.Forward(ids, model.Step(pos, AttentionMasks.CausalOverCache(pos, tokens.Length), cache));
        }
        long before = SmallRowsGemm.ProductsOnThisThread;
        var kernel = Run();
        long products = SmallRowsGemm.ProductsOnThisThread - before;
        Tensor reference;
        using (SmallRowsGemm.Off()) reference = Run();

        if (DecodeGemv.Detected != DecodeKernel.Scalar) Assert.Equal(c.NumHiddenLayers * 2 + 1, products); // gate/up and down per layer; the vocabulary head
        else Assert.Equal(0, products);
        double diff = (kernel - reference).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"logits differ by {diff:E2}");
    }
}
