using System.Text.Json;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Prompting;

/// <summary>
/// <c>kvlink_prompt.json</c> in a checkpoint folder: the prompt settings a KVLink model was trained with, for models
/// (like the demo model) trained with a shorter system prompt or the slot-free document header. Absent for published
/// checkpoints. Fields: <c>system_text</c> (string) and <c>document_header</c> (<c>"numbered"</c>, the published
/// <c>Document [n](Title: …)</c>, when absent; or <c>"slot-free"</c>, <c>Document (Title: …)</c>).
/// </summary>
internal static class PromptSettingsFile
{
    /// <summary>The file name inside a checkpoint folder.</summary>
    public const string FileName = "kvlink_prompt.json";

    /// <summary>The <c>document_header</c> value of <see cref="KvLinkLlama3Format.SlotFreeHeader"/> models.</summary>
    public const string SlotFreeHeader = "slot-free";

    /// <summary>The <c>document_header</c> value of the published, numbered header (also the meaning of an absent field).</summary>
    public const string NumberedHeader = "numbered";

    /// <summary>The stored settings: the system text (null when none is set) and whether documents use the slot-free header.</summary>
    public readonly record struct Settings(string? SystemText, bool SlotFree);

    /// <summary>The stored system text, or null when the folder has no settings file or the file sets none.</summary>
    /// <exception cref="InvalidDataException">See <see cref="Read"/>.</exception>
    public static string? ReadSystemText(string folder) => Read(folder)?.SystemText;

    /// <summary>The stored settings, or null when the folder has no settings file.</summary>
    /// <exception cref="InvalidDataException">The file is not a regular file of at most 1 MiB, not a JSON object, its
    /// system_text is present but not a string, or its document_header is not "numbered" or "slot-free"; the message names the file.</exception>
    public static Settings? Read(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path)) return null;
        using var doc = IO.UntrustedJson.ParseObject(IO.UntrustedFile.ReadAllBytes(path, IO.UntrustedFile.SmallJsonMaxBytes), path);
        var root = doc.RootElement;
        // A present but unusable value is an error: silently using the published prompt would change the answers.
        string? system = !root.TryGetProperty("system_text", out var s) || s.ValueKind == JsonValueKind.Null ? null
            : s.ValueKind == JsonValueKind.String ? s.GetString() : throw new InvalidDataException($"{path}: 'system_text' must be a string.");
        bool slotFree = !root.TryGetProperty("document_header", out var h) || h.ValueKind == JsonValueKind.Null ? false
            : h.ValueKind == JsonValueKind.String && h.GetString() == SlotFreeHeader ? true
            : h.ValueKind == JsonValueKind.String && h.GetString() == NumberedHeader ? false
            : throw new InvalidDataException($"{path}: 'document_header' must be \"{NumberedHeader}\" or \"{SlotFreeHeader}\" (is {h.GetRawText()}).");
        return new Settings(system, slotFree);
    }

    /// <summary>Writes the settings file (the document header always, so the file says how the model was trained).</summary>
    public static void Write(string folder, string systemText, bool slotFree = false)
    {
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, FileName), JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["system_text"] = systemText,
            ["document_header"] = slotFree ? SlotFreeHeader : NumberedHeader,
        }));
    }

    /// <summary>
    /// The prompt format a checkpoint folder's settings ask for, or null when the folder has no settings file:
    /// <see cref="KvLinkLlama3Format.FromTokenizer"/> with the stored system text (else the published one) and the stored header.
    /// </summary>
    public static KvLinkLlama3Format? StoredFormat(string folder, LlamaTokenizer tokenizer) =>
        Read(folder) is { } settings
            ? KvLinkLlama3Format.FromTokenizer(tokenizer, settings.SystemText ?? KvLinkLlama3Format.PublishedSystemText).WithSlotFreeHeader(settings.SlotFree)
            : null;

    /// <summary>The prompt format for a checkpoint folder: <see cref="StoredFormat"/>, else the published one for the tokenizer.</summary>
    public static KvLinkLlama3Format FormatFor(string folder, LlamaTokenizer tokenizer) =>
        StoredFormat(folder, tokenizer) ?? KvLinkLlama3Format.FromTokenizer(tokenizer);
}
