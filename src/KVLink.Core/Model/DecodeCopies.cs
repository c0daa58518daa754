using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>The bf16 copies of float32 weights that decoding rows read (<see cref="Projection.KeepBf16ForDecoding"/>).</summary>
internal static class DecodeCopies
{
    /// <summary>A contiguous bf16 copy of a 2-D CPU weight (round to nearest even, as LibTorch converts), outside autograd.</summary>
    public static Tensor Bf16Of(Tensor weight)
    {
        if (weight.dim() != 2 || weight.device_type != TorchSharp.DeviceType.CPU)
            throw new ArgumentException("A bf16 decoding copy is made of a 2-D CPU weight.", nameof(weight));
        using var _ = no_grad();
        return weight.detach().to(ScalarType.BFloat16).contiguous();
    }
}
