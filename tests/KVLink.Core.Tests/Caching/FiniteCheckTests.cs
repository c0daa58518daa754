using KVLink.Core.Caching.Format;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Caching;

/// <summary>The bit-level finite check agrees with LibTorch's isfinite for every dtype, position and kind of non-finite value.</summary>
public class FiniteCheckTests
{
    public static TheoryData<ScalarType> DTypes => [ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float32, ScalarType.Float64];

    [Theory]
    [MemberData(nameof(DTypes))]
    public void Agrees_with_isfinite_for_every_injected_value_and_position(ScalarType dtype)
    {
        var rng = new Random(1);
        float[] poison = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, -float.NaN];
        foreach (int length in new[] { 1, 7, 31, 64, 65, 1000, 4097 })
        {
            using var clean = (randn(length) * 1000).to(dtype);
            Assert.True(FiniteCheck.AllFinite(clean));
            for (int trial = 0; trial < 6; trial++)
            {
                using var t = clean.clone();
                int at = trial == 0 ? length - 1 : rng.Next(length); // the tail past the last full vector too
                t[at] = poison[trial % poison.Length];
                Assert.Equal(t.isfinite().all().item<bool>(), FiniteCheck.AllFinite(t));
                Assert.False(FiniteCheck.AllFinite(t));
            }
        }
    }

    [Fact]
    public void Largest_finite_values_and_subnormals_are_finite()
    {
        using var bf = tensor(new[] { 3.38e38f, -3.38e38f, 1e-40f, 0f, -0f }).to(ScalarType.BFloat16);
        using var half = tensor(new[] { 65504f, -65504f, 6e-8f }).to(ScalarType.Float16);
        using var single = tensor(new[] { float.MaxValue, float.MinValue, float.Epsilon });
        Assert.True(FiniteCheck.AllFinite(bf));
        Assert.True(FiniteCheck.AllFinite(half));
        Assert.True(FiniteCheck.AllFinite(single));
    }

    [Fact]
    public void A_non_contiguous_view_is_checked_too()
    {
        using var t = randn(8, 8);
        t[3, 5] = float.NaN;
        using var view = t.t();
        Assert.False(FiniteCheck.AllFinite(view));
    }
}
