using TorchSharp;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>Maps safetensors dtype names to TorchSharp element types and sizes.</summary>
internal static class SafeTensorDType
{
    // The subset of the format's dtypes that LibTorch can hold; anything else is rejected on read.
    private static readonly (string Name, torch.ScalarType Type, int Size)[] Table =
    [
        ("F64", torch.ScalarType.Float64, 8),
        ("F32", torch.ScalarType.Float32, 4),
        ("F16", torch.ScalarType.Float16, 2),
        ("BF16", torch.ScalarType.BFloat16, 2),
        ("I64", torch.ScalarType.Int64, 8),
        ("I32", torch.ScalarType.Int32, 4),
        ("I16", torch.ScalarType.Int16, 2),
        ("I8", torch.ScalarType.Int8, 1),
        ("U8", torch.ScalarType.Byte, 1),
        ("BOOL", torch.ScalarType.Bool, 1),
    ];

    /// <summary>Every supported dtype name.</summary>
    public static IReadOnlyList<string> Names { get; } = Array.ConvertAll(Table, e => e.Name);

    /// <summary>Looks up a dtype name (case-sensitive, as the format requires).</summary>
    /// <returns>False when the name is not a supported dtype.</returns>
    public static bool TryParse(string name, out torch.ScalarType type, out int elementSize)
    {
        foreach (var e in Table)
        {
            if (e.Name == name) { type = e.Type; elementSize = e.Size; return true; }
        }
        type = default;
        elementSize = 0;
        return false;
    }

    /// <summary>The TorchSharp element type of a dtype name.</summary>
    /// <exception cref="ArgumentException">The name is not a supported dtype.</exception>
    public static torch.ScalarType ToScalarType(string name) =>
        TryParse(name, out var type, out _) ? type : throw new ArgumentException($"Unsupported safetensors dtype '{name}'.", nameof(name));

    /// <summary>Bytes per element of a dtype name.</summary>
    /// <exception cref="ArgumentException">The name is not a supported dtype.</exception>
    public static int ElementSize(string name) =>
        TryParse(name, out _, out int size) ? size : throw new ArgumentException($"Unsupported safetensors dtype '{name}'.", nameof(name));

    /// <summary>The dtype name of a TorchSharp element type.</summary>
    /// <exception cref="ArgumentException">The type has no safetensors counterpart here (complex, quantized...).</exception>
    public static string ToName(torch.ScalarType type)
    {
        foreach (var e in Table)
        {
            if (e.Type == type) return e.Name;
        }
        throw new ArgumentException($"Element type {type} cannot be stored in safetensors by this writer.", nameof(type));
    }
}
