using System.Text.Json;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>
/// Parses <c>model.safetensors.index.json</c> (<c>{"metadata": {...}, "weight_map": {tensor: shard}}</c>).
/// Shard names come from an untrusted file, so only plain file names inside the checkpoint folder are accepted.
/// </summary>
internal static class CheckpointIndex
{
    /// <summary>File name of the shard index in a Hugging Face checkpoint folder.</summary>
    public const string FileName = "model.safetensors.index.json";

    /// <summary>Reads the tensor-to-shard map of an index file.</summary>
    /// <exception cref="InvalidDataException">The index is malformed; the message names the file.</exception>
    public static IReadOnlyDictionary<string, string> ReadWeightMap(string indexPath)
    {
        // Same cap as a safetensors header: an index is a small map of names.
        byte[] bytes = IO.UntrustedFile.ReadAllBytes(indexPath, SafeTensorsFile.MaxHeaderBytes);
        using (var doc = IO.UntrustedJson.ParseObject(bytes, indexPath))
        {
            if (!doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw SafeTensorsHeader.Bad(indexPath, "weight_map is missing or not a JSON object");

            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                if (entry.Value.ValueKind != JsonValueKind.String)
                    throw SafeTensorsHeader.Bad(indexPath, entry.Name, "shard name is not a string");
                string shard = entry.Value.GetString()!;
                if (!IsPlainFileName(shard))
                    throw SafeTensorsHeader.Bad(indexPath, entry.Name, $"shard name '{shard}' is not a plain file name inside the folder");
                if (!result.TryAdd(entry.Name, shard))
                    throw SafeTensorsHeader.Bad(indexPath, entry.Name, "appears twice in weight_map");
            }
            return result;
        }
    }

    /// <summary>
    /// True for a name that can only resolve to a file directly inside the folder: no separators of
    /// either platform, no drive or root, no "." or "..", no characters the OS forbids in names.
    /// </summary>
    public static bool IsPlainFileName(string name) =>
        name.Length > 0
        && name != "." && name != ".."
        && name.IndexOfAny(['/', '\\', ':', '\0']) < 0
        && name.IndexOfAny(Path.GetInvalidFileNameChars()) < 0
        && !Path.IsPathRooted(name)
        && Path.GetFileName(name) == name;
}
