using System.Text.Json;

namespace KVLink.Core.IO;

/// <summary>
/// Parses JSON that came from a checkpoint folder or a settings file (<see cref="UntrustedFile"/>) and must be an object:
/// a parse error or any other root is an <see cref="InvalidDataException"/> that names the file, never a
/// <see cref="JsonException"/> from deep inside the reader.
/// </summary>
internal static class UntrustedJson
{
    /// <summary>The parsed document, whose root is an object; the caller disposes it.</summary>
    /// <param name="json">The JSON bytes.</param>
    /// <param name="path">The file, for messages.</param>
    /// <param name="part">The part of the file the bytes are (e.g. "header"), for messages; null for the whole file.</param>
    /// <exception cref="InvalidDataException">Not valid JSON, or the root is not an object.</exception>
    public static JsonDocument ParseObject(ReadOnlyMemory<byte> json, string path, string? part = null)
    {
        string where = part is null ? path : $"{path}: {part}";
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{where}: invalid JSON: {e.Message}", e);
        }
        if (doc.RootElement.ValueKind == JsonValueKind.Object) return doc;
        doc.Dispose();
        throw new InvalidDataException($"{where}: the root is not a JSON object");
    }
}
