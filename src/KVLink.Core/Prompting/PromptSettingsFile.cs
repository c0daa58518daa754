using System.Text.Json;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Prompting;

/// <summary>
/// <c>kvlink_prompt.json</c> in a checkpoint folder: the system text a KVLink model was trained with, for models
/// (like the demo model) trained with a shorter system prompt than the published one. Absent for published checkpoints.
/// </summary>
public static class PromptSettingsFile
{
    /// <summary>The file name inside a checkpoint folder.</summary>
    public const string FileName = "kvlink_prompt.json";

    /// <summary>The stored system text, or null when the folder has no settings file.</summary>
    public static string? ReadSystemText(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return null;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        return doc.RootElement.TryGetProperty("system_text", out var s) && s.ValueKind == JsonValueKind.String ? s.GetString() : null;
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
