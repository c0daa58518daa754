using System.Text.Json;

namespace KVLink.Core.Model;

/// <summary>The name a checkpoint folder goes by: config.json's <c>_name_or_path</c>, else the folder's name.</summary>
internal static class CheckpointName
{
    public static string Of(string folder)
    {
        string full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder));
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(full, "config.json")));
            if (doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("_name_or_path", out var name) && name.ValueKind == JsonValueKind.String
                && name.GetString() is { Length: > 0 } value && !string.IsNullOrWhiteSpace(value))
                // A local path (a training run's output folder) says less than a hub id: keep its last segment.
                return Path.IsPathRooted(value) ? Path.GetFileName(Path.TrimEndingDirectorySeparator(value)) is { Length: > 0 } last ? last : value : value;
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { }
        return Path.GetFileName(full) is { Length: > 0 } folderName ? folderName : full;
    }
}
