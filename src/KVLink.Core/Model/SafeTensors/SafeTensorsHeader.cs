using System.Text.Json;
using System.Text.Unicode;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>
/// Parses and validates the JSON header of a safetensors file. The header is untrusted: every check
/// that bounds later allocations (shapes, offsets, sizes) happens here, before any tensor is read.
/// </summary>
internal sealed class SafeTensorsHeader
{
    /// <summary>Key reserved by the format for the string-to-string metadata map.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>
    /// Deeper shapes than this are refused: no real checkpoint comes close, and LibTorch kernels
    /// have their own rank limits we would otherwise hit later with a less helpful error.
    /// </summary>
    public const int MaxRank = 64;

    private SafeTensorsHeader(Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>Tensor entries by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> map, empty when absent.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Validates <paramref name="json"/> against a data section of <paramref name="dataLength"/> bytes.</summary>
    /// <param name="json">The header bytes (trailing space padding allowed).</param>
    /// <param name="dataLength">Bytes in the file after the header.</param>
    /// <param name="path">File name used in error messages.</param>
    /// <exception cref="InvalidDataException">Any violation of the format.</exception>
    public static SafeTensorsHeader Parse(ReadOnlyMemory<byte> json, long dataLength, string path)
    {
        // Checked explicitly so that the message says "UTF-8" rather than a parser position.
        if (!Utf8.IsValid(json.Span)) throw Bad(path, "header is not valid UTF-8");

        using (var doc = IO.UntrustedJson.ParseObject(json, path, "header"))
        {
            var root = doc.RootElement;
            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            Dictionary<string, string>? metadata = null;
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    if (metadata is not null) throw Bad(path, $"'{MetadataKey}' appears twice");
                    metadata = ParseMetadata(property.Value, path);
                    continue;
                }
                // JSON allows repeated keys; two different entries for one name would make reads ambiguous.
                if (tensors.ContainsKey(property.Name)) throw Bad(path, property.Name, "appears twice in the header");
                tensors.Add(property.Name, ParseEntry(property.Name, property.Value, dataLength, path));
            }
            CheckNoOverlap(tensors.Values, path);
            return new SafeTensorsHeader(tensors, metadata ?? new Dictionary<string, string>());
        }
    }

    private static SafeTensorInfo ParseEntry(string name, JsonElement entry, long dataLength, string path)
    {
        if (entry.ValueKind != JsonValueKind.Object) throw Bad(path, name, "entry is not a JSON object");

        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Bad(path, name, "dtype is missing or not a string");
        string dtype = dtypeElement.GetString()!;
        if (!SafeTensorDType.TryParse(dtype, out _, out int elementSize))
            throw Bad(path, name, $"unknown dtype '{dtype}' (supported: {string.Join(", ", SafeTensorDType.Names)})");

        long[] shape = ParseShape(name, entry, path);
        long byteLength = ByteLength(name, shape, elementSize, path);

        if (!entry.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw Bad(path, name, "data_offsets is missing or not an array of two integers");
        if (!NonNegative(offsets[0], out long begin) || !NonNegative(offsets[1], out long end))
            throw Bad(path, name, "data_offsets must be two non-negative integers");
        if (begin > end) throw Bad(path, name, $"data_offsets begin {begin} is after end {end}");
        if (end > dataLength) throw Bad(path, name, $"data_offsets end {end} is beyond the data section ({dataLength} bytes)");
        if (end - begin != byteLength)
            throw Bad(path, name, $"data_offsets span {end - begin} bytes but shape and dtype need {byteLength}");

        return new SafeTensorInfo(name, dtype, shape, begin, end);
    }

    private static long[] ParseShape(string name, JsonElement entry, string path)
    {
        if (!entry.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Bad(path, name, "shape is missing or not an array");
        int rank = shapeElement.GetArrayLength();
        if (rank > MaxRank) throw Bad(path, name, $"shape has {rank} dimensions, more than {MaxRank}");
        var shape = new long[rank];
        for (int i = 0; i < rank; i++)
        {
            if (!NonNegative(shapeElement[i], out shape[i]))
                throw Bad(path, name, "shape must be an array of non-negative integers");
        }
        return shape;
    }

    /// <summary>
    /// Bytes the tensor needs. Zero-sized dimensions are counted as 1 for the overflow check, because
    /// LibTorch computes strides from the other dimensions and would fail on them later anyway.
    /// </summary>
    private static long ByteLength(string name, long[] shape, int elementSize, string path)
    {
        long bound = elementSize;
        bool empty = false;
        foreach (long d in shape)
        {
            if (d == 0) { empty = true; continue; }
            if (bound > long.MaxValue / d) throw Bad(path, name, "element count overflows (shape is too large)");
            bound *= d;
        }
        return empty ? 0 : bound;
    }

    private static bool NonNegative(JsonElement e, out long value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value) && value >= 0;
    }

    private static Dictionary<string, string> ParseMetadata(JsonElement element, string path)
    {
        if (element.ValueKind != JsonValueKind.Object) throw Bad(path, $"'{MetadataKey}' is not a JSON object");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in element.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String)
                throw Bad(path, $"'{MetadataKey}' value of '{p.Name}' is not a string");
            if (!metadata.TryAdd(p.Name, p.Value.GetString()!))
                throw Bad(path, $"'{MetadataKey}' key '{p.Name}' appears twice");
        }
        return metadata;
    }

    /// <summary>Sorted by begin, each non-empty range must end before the next one starts.</summary>
    private static void CheckNoOverlap(IEnumerable<SafeTensorInfo> tensors, string path)
    {
        // Empty tensors cover no bytes, so they cannot alias anything wherever their offsets point.
        var ranges = tensors.Where(t => t.End > t.Begin)
            .OrderBy(t => t.Begin).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
        for (int i = 1; i < ranges.Count; i++)
        {
            if (ranges[i].Begin < ranges[i - 1].End)
                throw Bad(path, ranges[i].Name, $"data overlaps tensor '{ranges[i - 1].Name}'");
        }
    }

    internal static InvalidDataException Bad(string path, string message) => new($"{path}: {message}");

    internal static InvalidDataException Bad(string path, string tensor, string message) => new($"{path}: tensor '{tensor}': {message}");
}
