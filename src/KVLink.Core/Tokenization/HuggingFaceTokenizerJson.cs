using System.Text.Json;

namespace KVLink.Core.Tokenization;

/// <summary>Writes Hugging Face <c>tokenizer.json</c> files for byte-level BPE tokenizers, with the
/// Llama 3 pre-tokenizer, so small tokenizers (tests, tiny trained models) load like real checkpoints.</summary>
internal static class HuggingFaceTokenizerJson
{
    /// <summary>Writes a byte-level BPE <c>tokenizer.json</c>.</summary>
    /// <param name="path">File to create or overwrite.</param>
    /// <param name="vocab">Token bytes; the index in the list is the token id.</param>
    /// <param name="merges">Merges by priority (first = applied first), as pairs of token ids whose
    /// concatenated bytes must also be a token.</param>
    /// <param name="specialTokens">Added special tokens (name to id); their ids must not be vocabulary ids.</param>
    /// <param name="ignoreMerges">Sets <c>model.ignore_merges</c>: a piece that is already a token is not split
    /// (what Llama 3 uses; ranks then follow token ids, as in tiktoken).</param>
    /// <exception cref="ArgumentException">Duplicate tokens, merges whose result is not a token, or clashing ids.</exception>
    public static void Write(
        string path, IReadOnlyList<byte[]> vocab, IEnumerable<(int Left, int Right)> merges,
        IReadOnlyDictionary<string, int>? specialTokens = null, bool ignoreMerges = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(vocab);
        ArgumentNullException.ThrowIfNull(merges);
        specialTokens ??= new Dictionary<string, int>();

        var names = new string[vocab.Count];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int id = 0; id < vocab.Count; id++)
        {
            names[id] = ByteLevelAlphabet.Encode(vocab[id] ?? throw new ArgumentException($"Token {id} is null.", nameof(vocab)));
            if (names[id].Length == 0 || !seen.Add(names[id]))
                throw new ArgumentException($"Token {id} is empty or repeats another token.", nameof(vocab));
        }
        var mergeNames = new List<(string, string)>();
        foreach (var (left, right) in merges)
        {
            if ((uint)left >= (uint)vocab.Count || (uint)right >= (uint)vocab.Count)
                throw new ArgumentException($"Merge ({left}, {right}) refers to a missing token.", nameof(merges));
            if (!seen.Contains(names[left] + names[right]))
                throw new ArgumentException($"Merge ({left}, {right}) produces bytes that are not a token.", nameof(merges));
            mergeNames.Add((names[left], names[right]));
        }
        foreach (var (name, id) in specialTokens)
        {
            if (id < 0 || id < vocab.Count)
                throw new ArgumentException($"Special token {name} has id {id}, which is negative or a vocabulary id.", nameof(specialTokens));
        }

        using var file = File.Create(path);
        using var json = new Utf8JsonWriter(file, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("version", "1.0");
        json.WriteNull("truncation");
        json.WriteNull("padding");
        WriteAddedTokens(json, specialTokens);
        json.WriteNull("normalizer");
        WriteLlama3PreTokenizer(json);
        json.WriteNull("post_processor");
        json.WriteStartObject("decoder");
        json.WriteString("type", "ByteLevel");
        json.WriteBoolean("add_prefix_space", true);
        json.WriteBoolean("trim_offsets", true);
        json.WriteBoolean("use_regex", true);
        json.WriteEndObject();
        WriteModel(json, names, mergeNames, ignoreMerges);
        json.WriteEndObject();
    }

    private static void WriteAddedTokens(Utf8JsonWriter json, IReadOnlyDictionary<string, int> specialTokens)
    {
        json.WriteStartArray("added_tokens");
        foreach (var (name, id) in specialTokens.OrderBy(p => p.Value))
        {
            json.WriteStartObject();
            json.WriteNumber("id", id);
            json.WriteString("content", name);
            json.WriteBoolean("single_word", false);
            json.WriteBoolean("lstrip", false);
            json.WriteBoolean("rstrip", false);
            json.WriteBoolean("normalized", false);
            json.WriteBoolean("special", true);
            json.WriteEndObject();
        }
        json.WriteEndArray();
    }

    // Same shape as Llama 3's file: split with the Llama 3 regex, then map bytes without a second split.
    private static void WriteLlama3PreTokenizer(Utf8JsonWriter json)
    {
        json.WriteStartObject("pre_tokenizer");
        json.WriteString("type", "Sequence");
        json.WriteStartArray("pretokenizers");
        json.WriteStartObject();
        json.WriteString("type", "Split");
        json.WriteStartObject("pattern");
        json.WriteString("Regex", PreTokenizerPatterns.Llama3);
        json.WriteEndObject();
        json.WriteString("behavior", "Isolated");
        json.WriteBoolean("invert", false);
        json.WriteEndObject();
        json.WriteStartObject();
        json.WriteString("type", "ByteLevel");
        json.WriteBoolean("add_prefix_space", false);
        json.WriteBoolean("trim_offsets", true);
        json.WriteBoolean("use_regex", false);
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void WriteModel(Utf8JsonWriter json, string[] names, List<(string, string)> merges, bool ignoreMerges)
    {
        json.WriteStartObject("model");
        json.WriteString("type", "BPE");
        json.WriteNull("dropout");
        json.WriteNull("unk_token");
        json.WriteNull("continuing_subword_prefix");
        json.WriteNull("end_of_word_suffix");
        json.WriteBoolean("fuse_unk", false);
        json.WriteBoolean("byte_fallback", false);
        json.WriteBoolean("ignore_merges", ignoreMerges);
        json.WriteStartObject("vocab");
        for (int id = 0; id < names.Length; id++)
            json.WriteNumber(names[id], id);
        json.WriteEndObject();
        json.WriteStartArray("merges");
        foreach (var (left, right) in merges)
        {
            json.WriteStartArray();
            json.WriteStringValue(left);
            json.WriteStringValue(right);
            json.WriteEndArray();
        }
        json.WriteEndArray();
        json.WriteEndObject();
    }
}
