using System.Text.Json;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Prompting;

/// <summary>
/// <c>kvlink_prompt.json</c> in a checkpoint folder: the system text a KVLink model was trained with, for models
/// (like the demo model) trained with a shorter system prompt than the published one. Absent for published checkpoints.
/// </summary>
internal static class PromptSettingsFile
{
    /// <summary>The file name inside a checkpoint folder.</summary>
    public const string FileName = "kvlink_prompt.json";

    /// <summary>The stored system text, or null when the folder has no settings file or the file sets none.</summary>
    /// <exception cref="InvalidDataException">The file is not a regular file of at most 1 MiB, not a JSON object, or its
    /// system_text is present but not a string; the message names the file.</exception>
    public static string? ReadSystemText(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return null;
        byte[] bytes = IO.UntrustedFile.ReadAllBytes(path, IO.UntrustedFile.SmallJsonMaxBytes);
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: the root is not a JSON object.");
            if (!doc.RootElement.TryGetProperty("system_text", out var s) || s.ValueKind == JsonValueKind.Null) return null;
            // A present but unusable value is an error: silently using the published prompt would change the answers.
            return s.ValueKind == JsonValueKind.String ? s.GetString() : throw new InvalidDataException($"{path}: 'system_text' must be a string.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
        }
    }

    /// <summary>Writes the settings file.</summary>
    public static void Write(string folder, string systemText)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, FileName), JsonSerializer.Serialize(new Dictionary<string, string> { ["system_text"] = systemText }));
    }

    /// <summary>The prompt format for a checkpoint folder: <see cref="KvLinkLlama3Format.FromTokenizer"/> with the stored system text, else the published one.</summary>
    public static KvLinkLlama3Format FormatFor(string folder, LlamaTokenizer tokenizer) =>
        KvLinkLlama3Format.FromTokenizer(tokenizer, ReadSystemText(folder) ?? KvLinkLlama3Format.PublishedSystemText);
}
