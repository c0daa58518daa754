using TorchSharp;

namespace KVLink.Core.Model;

/// <summary>
/// TorchSharp scalars that live as long as the process, for the constants the model's operations take.
/// </summary>
/// <remarks>
/// A <see cref="Scalar"/> is a native handle with a finalizer, and no dispose scope tracks it. One made for a single
/// call (<c>x + 1e-5</c>, or the alpha = 1 inside TorchSharp's <c>Tensor.add(Tensor)</c>) is unreachable from the moment
/// its handle is read, so a garbage collection started by any other thread while LibTorch runs the call lets the
/// finalizer thread free the scalar before LibTorch reads it: "Expected false to be true ... toFloat" or
/// "INTERNAL ASSERT FAILED at c10/core/Scalar.h", about once in 1,000 long requests under load. Every scalar KVLink.Core
/// hands to TorchSharp is therefore held: one of these statics, a field of its module, or a <c>using</c> local that
/// outlives the call (HeldScalarsTests checks the compiled IL for temporaries).
/// </remarks>
internal static class HeldScalars
{
    /// <summary>1, the alpha of every add and sub.</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>2, the exponent of a square.</summary>
    public static readonly Scalar Two = 2.ToScalar();

    /// <summary>0, where a range starts.</summary>
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary>-infinity (double), what a masked attention score is filled with.</summary>
    public static readonly Scalar NegativeInfinity = double.NegativeInfinity.ToScalar();
}
