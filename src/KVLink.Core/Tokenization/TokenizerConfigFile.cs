using System.Text.Json;

namespace KVLink.Core.Tokenization;

/// <summary>What we use from a checkpoint's <c>tokenizer_config.json</c>: the added tokens by id
/// (<c>added_tokens_decoder</c>), the tokens named for a role (<c>bos_token</c>, <c>eos_token</c>, <c>pad_token</c>,
/// <c>unk_token</c>) and the chat template. The file is untrusted: problems become <see cref="InvalidDataException"/>
/// naming it.</summary>
internal sealed class TokenizerConfigFile
{
    /// <summary>The file name inside a checkpoint folder.</summary>
    public const string FileName = "tokenizer_config.json";

    private static readonly string[] RoleKeys = ["bos_token", "eos_token", "pad_token", "unk_token"];

    /// <summary>Every added token (matched whole in text), name to id.</summary>
    public Dictionary<string, int> AddedTokens { get; } = new(StringComparer.Ordinal);

    /// <summary>The added tokens marked <c>special</c>.</summary>
    public Dictionary<string, int> SpecialTokens { get; } = new(StringComparer.Ordinal);

    /// <summary>Token names given a role, with the key that names them (e.g. <c>eos_token</c>).</summary>
    public List<(string Name, string Role)> RoleTokens { get; } = [];

    /// <summary>All chat templates, concatenated (empty when there is none).</summary>
    public string ChatTemplate { get; private set; } = "";

    /// <summary>Reads the file in <paramref name="folder"/>, or returns null when there is none.</summary>
    public static TokenizerConfigFile? TryRead(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
            return null;
        try
        {
            using var doc = JsonDocument.Parse(IO.UntrustedFile.ReadAllBytes(path, IO.UntrustedFile.TokenizerMaxBytes)); // a regular file, capped: never a FIFO or /dev/zero
            return Parse(doc.RootElement);
        }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    private static TokenizerConfigFile Parse(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException("the top level is not an object.");
        var config = new TokenizerConfigFile();
        if (root.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in decoder.EnumerateObject())
            {
                if (!int.TryParse(entry.Name, out int id) || id < 0 || id > TokenByteTable.MaxId
                    || entry.Value.ValueKind != JsonValueKind.Object
                    || !entry.Value.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String
                    || string.IsNullOrEmpty(content.GetString()))
                    throw new InvalidDataException($"added_tokens_decoder entry '{entry.Name}' needs an id in [0, 2^24) and a non-empty 'content'.");
                string name = content.GetString()!;
                if (!config.AddedTokens.TryAdd(name, id))
                    throw new InvalidDataException($"added token '{name}' appears twice in added_tokens_decoder.");
                if (entry.Value.TryGetProperty("special", out var special) && special.ValueKind == JsonValueKind.True)
                    config.SpecialTokens[name] = id;
            }
        }
        foreach (string key in RoleKeys)
        {
            if (!root.TryGetProperty(key, out var value))
                continue;
            // Either the name itself or an AddedToken object { "content": name, ... }.
            string? name = value.ValueKind == JsonValueKind.String ? value.GetString()
                : value.ValueKind == JsonValueKind.Object && value.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()
                : null;
            if (!string.IsNullOrEmpty(name))
                config.RoleTokens.Add((name, key));
        }
        if (root.TryGetProperty("chat_template", out var template))
        {
            // A single template, or a list of { "name", "template" }.
            config.ChatTemplate = template.ValueKind switch
            {
                JsonValueKind.String => template.GetString()!,
                JsonValueKind.Array => string.Join("\n", template.EnumerateArray()
                    .Where(t => t.ValueKind == JsonValueKind.Object && t.TryGetProperty("template", out var s) && s.ValueKind == JsonValueKind.String)
                    .Select(t => t.GetProperty("template").GetString())),
                _ => "",
            };
        }
        return config;
    }
}
