using System.Text.Json;

namespace KVLink.Core.Tokenization;

/// <summary>
/// The special tokens of a checkpoint whose only tokenizer file is tiktoken's <c>original/tokenizer.model</c>,
/// which holds ranks but no special-token names. The names come from the checkpoint's own
/// <c>tokenizer_config.json</c> (<c>added_tokens_decoder</c>) when it has them; otherwise from the built-in table of
/// the Llama 3 release the checkpoint looks like, because 3.0 and 3.1/3.2 name the same ids differently.
/// </summary>
internal static class CheckpointSpecialTokens
{
    /// <summary>Tokens matched whole, tokens reported as special, and a sentence saying where they came from.</summary>
    public static (IReadOnlyDictionary<string, int> Matched, IReadOnlyDictionary<string, int> Special, string Source) Resolve(
        string folder, TokenizerConfigFile? config)
    {
        if (config is { AddedTokens.Count: > 0 })
            return (config.AddedTokens, config.SpecialTokens.Count > 0 ? config.SpecialTokens : config.AddedTokens,
                $"{TokenizerConfigFile.FileName} added_tokens_decoder");
        var (isLlama30, evidence) = GuessRelease(folder);
        var table = isLlama30 ? Llama3SpecialTokens.CreateLlama30() : Llama3SpecialTokens.Create();
        return (table, table, $"built-in Llama {(isLlama30 ? "3.0" : "3.1/3.2")} table ({evidence})");
    }

    /// <summary>Llama 3.1 introduced the "llama3" RoPE scaling; 3.0 checkpoints have none. That is the one
    /// reliable difference in the files a checkpoint carries besides the tokenizer.</summary>
    private static (bool IsLlama30, string Evidence) GuessRelease(string folder)
    {
        string config = Path.Combine(folder, "config.json");
        if (File.Exists(config))
        {
            using var doc = Parse(config);
            bool scaled = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("rope_scaling", out var rs) && rs.ValueKind == JsonValueKind.Object
                && (rs.TryGetProperty("rope_type", out var t) || rs.TryGetProperty("type", out t)) && t.ValueKind == JsonValueKind.String
                && t.GetString() == "llama3";
            return (!scaled, scaled ? "config.json has llama3 rope_scaling" : "config.json has no llama3 rope_scaling");
        }
        string meta = Path.Combine(folder, "original", "params.json");
        if (File.Exists(meta))
        {
            using var doc = Parse(meta);
            bool scaled = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("use_scaled_rope", out var s) && s.ValueKind == JsonValueKind.True;
            return (!scaled, scaled ? "original/params.json has use_scaled_rope" : "original/params.json has no use_scaled_rope");
        }
        // The published KVLink checkpoints are Llama 3.2.
        return (false, "assumed: no tokenizer_config.json, config.json or original/params.json to tell the release");
    }

    private static JsonDocument Parse(string path)
    {
        try { return JsonDocument.Parse(IO.UntrustedFile.ReadAllBytes(path, IO.UntrustedFile.SmallJsonMaxBytes)); } // config.json or params.json: small, regular files only
        catch (JsonException e) { throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e); }
    }
}
