using TorchSharp;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>One tensor entry of a safetensors header.</summary>
/// <param name="Name">Tensor name, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="DType">Safetensors dtype name (<c>F32</c>, <c>BF16</c>, ...).</param>
/// <param name="Shape">Dimensions; empty for a scalar.</param>
/// <param name="Begin">First byte, relative to the start of the data section.</param>
/// <param name="End">One past the last byte, relative to the start of the data section.</param>
internal sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of bytes the tensor occupies in the file.</summary>
    public long ByteLength => End - Begin;

    /// <summary>The TorchSharp element type matching <see cref="DType"/>.</summary>
    public torch.ScalarType ScalarType => SafeTensorDType.ToScalarType(DType);
}
