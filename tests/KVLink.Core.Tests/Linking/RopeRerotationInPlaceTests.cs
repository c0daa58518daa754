using KVLink.Core.Linking;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Linking;

/// <summary>The fused in-place re-rotation gives bit-for-bit the tensor path's result, on cache views too.</summary>
public class RopeRerotationInPlaceTests
{
    private static readonly RotaryEmbedding Rope = new(64, 500000, new Llama3RopeScaling(32, 1, 4, 8192));

    // Head dim 64 fills whole vectors at every width; 40 (half 20) also runs the scalar tail after the vector lanes.
    // CI runs these again with AVX-512 and then AVX2 switched off, so each vector width is checked on any machine.
    [Theory]
    [InlineData(ScalarType.BFloat16, 64)]
    [InlineData(ScalarType.Float32, 64)]
    [InlineData(ScalarType.Float16, 64)]
    [InlineData(ScalarType.BFloat16, 40)]
    [InlineData(ScalarType.Float32, 40)]
    public void In_place_equals_the_tensor_path_on_a_strided_cache_view(ScalarType dtype, int headDim)
    {
        using var scope = NewDisposeScope();
        using var g = new TorchSharp.torch.Generator(3);
        var rope = headDim == 64 ? Rope : new RotaryEmbedding(headDim, 10000, null);
        // [layers, batch, kv_heads, capacity, d]; rotate positions 5..44 (a narrow view, not contiguous).
        var cache = (randn([3, 1, 2, 50, headDim], generator: g) * 4).to(dtype);
        long[] offsets = [.. Enumerable.Range(0, 40).Select(i => i < 17 ? 7L : i < 30 ? 1234L : 100_000L)];
        var view = cache.narrow(3, 5, 40);
        var expected = RopeRerotation.Shift(view, tensor(offsets), rope);
        var before = cache.clone();

        RopeRerotation.ShiftInPlace(view, offsets, rope);

        Assert.True((view.to(ScalarType.Float32) == expected.to(ScalarType.Float32)).all().item<bool>(), "rotated positions differ from the tensor path");
        Assert.True((cache.narrow(3, 0, 5) == before.narrow(3, 0, 5)).all().item<bool>(), "positions before the view changed");
        Assert.True((cache.narrow(3, 45, 5) == before.narrow(3, 45, 5)).all().item<bool>(), "positions after the view changed");
    }

    [Fact]
    public void Rounding_ties_and_special_values_match_LibTorch()
    {
        using var scope = NewDisposeScope();
        float[] values = [0f, -0f, 1f, -1f, 1.00390625f, 1.01171875f, 3.4e38f, -3.4e38f, 1e-40f, float.PositiveInfinity, float.NegativeInfinity, float.NaN];
        var row = tensor(values.Concat(Enumerable.Repeat(0.5f, 64 - values.Length)).ToArray(), [1, 64]).to(ScalarType.BFloat16);
        long[] offsets = [0];
        var expected = RopeRerotation.Shift(row, tensor(offsets), Rope);
        RopeRerotation.ShiftInPlace(row, offsets, Rope);
        var a = row.to(ScalarType.Float32).data<float>().ToArray();
        var b = expected.to(ScalarType.Float32).data<float>().ToArray();
        for (int i = 0; i < a.Length; i++)
            Assert.True(BitConverter.SingleToInt32Bits(a[i]) == BitConverter.SingleToInt32Bits(b[i]) || (float.IsNaN(a[i]) && float.IsNaN(b[i])), $"element {i}: {a[i]} vs {b[i]}");
    }
}
