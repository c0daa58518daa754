using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>The batched-forward tests' comparison of two caches that should hold the same keys and values (float32).</summary>
internal static class CacheAssert
{
    /// <summary>max |a - b| relative to max |b|.</summary>
    public static double RelativeError(Tensor a, Tensor b) => (a - b).abs().max().item<float>() / b.abs().max().item<float>();

    /// <summary>Same length, and keys and values equal within 1e-5 relative; <paramref name="what"/> names the cache in a failure.</summary>
    public static void Equal(AttentionCache expected, AttentionCache actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var (ka, va) = expected.Export(0, expected.Length);
        var (kb, vb) = actual.Export(0, actual.Length);
        Assert.True(RelativeError(kb, ka) < 1e-5 && RelativeError(vb, va) < 1e-5, $"{what}: cache differs");
    }
}
