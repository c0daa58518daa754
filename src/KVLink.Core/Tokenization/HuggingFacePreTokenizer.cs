using System.Text.Json;
using System.Text.RegularExpressions;

namespace KVLink.Core.Tokenization;

/// <summary>Turns the <c>pre_tokenizer</c> section of a byte-level <c>tokenizer.json</c> into the one
/// split pattern it amounts to. Only shapes that reduce to a single regex split are accepted, so a
/// file we cannot reproduce fails loudly instead of tokenizing differently from Hugging Face.</summary>
internal static class HuggingFacePreTokenizer
{
    // With no splitting step, the whole text is one piece.
    private const string WholeText = @"[\s\S]+";

    /// <exception cref="InvalidDataException">Unsupported or malformed section (message without the file name).</exception>
    public static string Pattern(JsonElement preTokenizer)
    {
        var patterns = new List<string>();
        Collect(preTokenizer, patterns);
        return patterns.Count switch
        {
            0 => WholeText,
            1 => patterns[0],
            _ => throw new InvalidDataException("pre_tokenizer splits more than once, which is not supported."),
        };
    }

    private static void Collect(JsonElement node, List<string> patterns)
    {
        if (node.ValueKind == JsonValueKind.Null)
            return;
        if (node.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException("pre_tokenizer is not an object.");
        string? type = node.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        switch (type)
        {
            case "Sequence":
                if (!node.TryGetProperty("pretokenizers", out var list) || list.ValueKind != JsonValueKind.Array)
                    throw new InvalidDataException("pre_tokenizer Sequence has no 'pretokenizers' array.");
                foreach (var child in list.EnumerateArray())
                    Collect(child, patterns);
                break;
            case "Split":
                patterns.Add(SplitPattern(node));
                break;
            case "ByteLevel":
                if (Flag(node, "add_prefix_space", false))
                    throw new InvalidDataException("pre_tokenizer ByteLevel with add_prefix_space is not supported.");
                // HF's ByteLevel splits with the GPT-2 regex unless use_regex is false (Llama 3 sets false).
                if (Flag(node, "use_regex", true))
                    patterns.Add(PreTokenizerPatterns.Gpt2);
                break;
            default:
                throw new InvalidDataException($"pre_tokenizer type '{type}' is not supported.");
        }
    }

    private static string SplitPattern(JsonElement node)
    {
        if (!node.TryGetProperty("behavior", out var b) || b.GetString() != "Isolated" || Flag(node, "invert", false))
            throw new InvalidDataException("pre_tokenizer Split is supported only with behavior 'Isolated' and invert false.");
        if (!node.TryGetProperty("pattern", out var p) || p.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException("pre_tokenizer Split has no 'pattern' object.");
        if (p.TryGetProperty("Regex", out var regex) && regex.ValueKind == JsonValueKind.String)
            return regex.GetString()!;
        if (p.TryGetProperty("String", out var literal) && literal.ValueKind == JsonValueKind.String)
            return Regex.Escape(literal.GetString()!);
        throw new InvalidDataException("pre_tokenizer Split pattern has neither 'Regex' nor 'String'.");
    }

    private static bool Flag(JsonElement node, string name, bool missing) =>
        !node.TryGetProperty(name, out var v) ? missing : v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new InvalidDataException($"pre_tokenizer '{name}' is not a boolean."),
        };
}
