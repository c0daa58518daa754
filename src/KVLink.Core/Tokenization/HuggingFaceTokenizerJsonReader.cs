using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KVLink.Core.Tokenization;

/// <summary>Loads a byte-level BPE <c>tokenizer.json</c>. The file is untrusted: every field is
/// checked, and any problem becomes an <see cref="InvalidDataException"/> naming the file.</summary>
internal static class HuggingFaceTokenizerJsonReader
{
    private const string AddedTokensSource = "tokenizer.json added_tokens";

    public static LlamaTokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] content = IO.UntrustedFile.ReadAllBytes(path, IO.UntrustedFile.TokenizerMaxBytes);
        try
        {
            using var doc = JsonDocument.Parse(content);
            return FromJson(doc.RootElement);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or RegexParseException)
        {
            // Microsoft.ML.Tokenizers rejects inconsistent vocabularies with these.
            throw new InvalidDataException($"{path}: rejected by the BPE builder ({e.Message})", e);
        }
    }

    private static LlamaTokenizer FromJson(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException("the top level is not an object.");
        if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException("missing 'model' object.");
        string? type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
        if (type != "BPE")
            throw new InvalidDataException($"model.type is '{type ?? "(missing)"}'; only byte-level 'BPE' is supported.");
        if (root.TryGetProperty("normalizer", out var normalizer) && normalizer.ValueKind != JsonValueKind.Null)
            throw new InvalidDataException("a normalizer is set; only tokenizers without one are supported.");

        var added = ReadAddedTokens(root, out var special);
        var (names, bytesById) = ReadVocab(model, added);
        var merges = ReadMerges(model, names);
        if (ByteCoverage.FindGap(bytesById.Values) is { } gap)
            throw new InvalidDataException($"model.vocab: {gap}.");
        string pattern = root.TryGetProperty("pre_tokenizer", out var pre) ? HuggingFacePreTokenizer.Pattern(pre) : PreTokenizerPatterns.Llama3;
        // A custom split pattern that can match the empty string would make encoding loop forever (the Llama 3 scanner cannot).
        if (pattern != PreTokenizerPatterns.Llama3)
            PreTokenizerPatterns.RejectEmptyMatches(PreTokenizerPatterns.Compile(pattern));

        // ignore_merges (Llama 3) means a piece that is a token stays whole, and the merges were
        // derived from tiktoken ranks = ids: exactly tiktoken's rule, so use the tiktoken engine.
        if (model.TryGetProperty("ignore_merges", out var ignore) && ignore.ValueKind == JsonValueKind.True)
            return LlamaTokenizer.FromRanks(bytesById, added, special, pattern, AddedTokensSource);

        BpeTokenizer Create(Dictionary<string, int> matched) => BpeTokenizer.Create(new BpeOptions(names)
        {
            Merges = merges,
            ByteLevel = true,
            SpecialTokens = matched,
            PreTokenizer = PreTokenizerPatterns.Create(pattern, matched),
        });
        // Text from users matches the added tokens that are not special (they are vocabulary), never the special ones.
        var plainMatched = added.Where(t => !special.ContainsKey(t.Key)).ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
        return new LlamaTokenizer(Create(added), new TokenByteTable(bytesById, added), special, AddedTokensSource, () => Create(plainMatched));
    }

    /// <summary>All added tokens are matched whole in text; those marked special are also reported as such.</summary>
    private static Dictionary<string, int> ReadAddedTokens(JsonElement root, out Dictionary<string, int> special)
    {
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        special = new Dictionary<string, int>(StringComparer.Ordinal);
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind == JsonValueKind.Null)
            return added;
        if (list.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException("'added_tokens' is not an array.");
        foreach (var token in list.EnumerateArray())
        {
            if (token.ValueKind != JsonValueKind.Object
                || !token.TryGetProperty("id", out var id) || !id.TryGetInt32(out int tokenId) || tokenId < 0 || tokenId > TokenByteTable.MaxId
                || !token.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.String
                || string.IsNullOrEmpty(content.GetString()))
                throw new InvalidDataException("an added_tokens entry lacks an 'id' in [0, 2^24) or a non-empty 'content'.");
            string name = content.GetString()!;
            if (!added.TryAdd(name, tokenId))
                throw new InvalidDataException($"added token '{name}' appears twice.");
            if (token.TryGetProperty("special", out var s) && s.ValueKind == JsonValueKind.True)
                special[name] = tokenId;
        }
        return added;
    }

    private static (Dictionary<string, int> Names, Dictionary<int, byte[]> Bytes) ReadVocab(
        JsonElement model, Dictionary<string, int> added)
    {
        if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
            throw new InvalidDataException("missing 'model.vocab' object.");
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        var bytes = new Dictionary<int, byte[]>();
        var addedIds = added.Values.ToHashSet();
        foreach (var entry in vocab.EnumerateObject())
        {
            if (!entry.Value.TryGetInt32(out int id) || id < 0 || id > TokenByteTable.MaxId)
                throw new InvalidDataException($"model.vocab entry '{entry.Name}' has no integer id in [0, 2^24).");
            if (!names.TryAdd(entry.Name, id))
                throw new InvalidDataException($"model.vocab entry '{entry.Name}' appears twice.");
            // Added tokens may also sit in the vocabulary under their plain name; their bytes come from the name.
            if (added.ContainsKey(entry.Name))
                continue;
            if (!ByteLevelAlphabet.TryDecode(entry.Name, out byte[] tokenBytes))
                throw new InvalidDataException($"model.vocab entry '{entry.Name}' is not in the byte-level alphabet.");
            if (!bytes.TryAdd(id, tokenBytes))
                throw new InvalidDataException($"model.vocab id {id} is used twice.");
            if (addedIds.Contains(id))
                throw new InvalidDataException($"model.vocab entry '{entry.Name}' has id {id}, which an added token with another name also has.");
        }
        if (names.Count == 0)
            throw new InvalidDataException("'model.vocab' is empty.");
        return (names, bytes);
    }

    /// <summary>Merges as "left right" strings, accepting both JSON forms ("a b" and ["a","b"]).</summary>
    private static List<string> ReadMerges(JsonElement model, Dictionary<string, int> names)
    {
        var merges = new List<string>();
        if (!model.TryGetProperty("merges", out var list) || list.ValueKind == JsonValueKind.Null)
            return merges;
        if (list.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException("'model.merges' is not an array.");
        foreach (var merge in list.EnumerateArray())
        {
            string[] parts = merge.ValueKind switch
            {
                JsonValueKind.String => merge.GetString()!.Split(' '),
                JsonValueKind.Array when merge.EnumerateArray().All(p => p.ValueKind == JsonValueKind.String) =>
                    merge.EnumerateArray().Select(p => p.GetString()!).ToArray(),
                _ => [],
            };
            // Byte-level tokens never contain a plain space (it is written 'Ġ'), so the space form is unambiguous.
            if (parts.Length != 2 || !names.ContainsKey(parts[0]) || !names.ContainsKey(parts[1]))
                throw new InvalidDataException($"model.merges entry {merges.Count} is not a pair of vocabulary tokens.");
            if (!names.ContainsKey(parts[0] + parts[1]))
                throw new InvalidDataException($"model.merges entry {merges.Count} produces '{parts[0] + parts[1]}', which is not in the vocabulary.");
            merges.Add(parts[0] + " " + parts[1]);
        }
        return merges;
    }
}
