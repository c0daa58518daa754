using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KVLink.Core.Tokenization;

/// <summary>A byte-level BPE tokenizer for Llama 3 style models, backed by Microsoft.ML.Tokenizers.</summary>
/// <remarks>Encoding never adds a beginning-of-text token: prompts are assembled from segments whose
/// KV caches are reused, so the caller decides where <c>&lt;|begin_of_text|&gt;</c> goes. Special tokens
/// written literally in the text (e.g. <c>&lt;|eot_id|&gt;</c>) are kept whole as their single id.</remarks>
public sealed class LlamaTokenizer
{
    private readonly TokenByteTable _bytes;
    private readonly Dictionary<string, int> _special;

    internal LlamaTokenizer(Tokenizer inner, TokenByteTable bytes, IReadOnlyDictionary<string, int> specialTokens)
    {
        InnerTokenizer = inner;
        _bytes = bytes;
        _special = new Dictionary<string, int>(specialTokens, StringComparer.Ordinal);
    }

    /// <summary>The Microsoft.ML.Tokenizers tokenizer that does the splitting and merging.</summary>
    public Tokenizer InnerTokenizer { get; }

    /// <summary>Special token names and their ids.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _special;

    /// <summary>Largest token id + 1 (ids below it may be unused when the vocabulary has gaps).</summary>
    public int VocabSize => _bytes.Count;

    /// <summary>Token ids of <paramref name="text"/>, without a beginning-of-text token.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return InnerTokenizer.EncodeToIds(text);
    }

    /// <summary>The text of a token sequence; special tokens appear as their names and byte
    /// sequences that are not valid UTF-8 become U+FFFD.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not a token.</exception>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        return _bytes.Decode(ids);
    }

    /// <summary>The exact bytes a token stands for (UTF-8 of the name for special tokens). A token
    /// may hold part of a multi-byte character, which is why streaming works on bytes.</summary>
    /// <exception cref="ArgumentOutOfRangeException">No token has this id.</exception>
    public ReadOnlySpan<byte> TokenBytes(int id) => _bytes[id];

    /// <summary>The id of a special token, or null when the tokenizer has none by that name.</summary>
    public int? TokenToId(string specialTokenName)
    {
        ArgumentNullException.ThrowIfNull(specialTokenName);
        return _special.TryGetValue(specialTokenName, out int id) ? id : null;
    }

    /// <summary>Loads a tiktoken BPE file, such as Llama 3's <c>original/tokenizer.model</c>.</summary>
    /// <param name="tiktokenFile">Lines of <c>base64(token bytes) rank</c>; ranks are the ids.</param>
    /// <param name="specialTokens">Special tokens; defaults to <see cref="Llama3SpecialTokens.Create"/>.</param>
    /// <exception cref="InvalidDataException">The file is not in tiktoken format.</exception>
    public static LlamaTokenizer FromTiktoken(Stream tiktokenFile, IReadOnlyDictionary<string, int>? specialTokens = null)
    {
        ArgumentNullException.ThrowIfNull(tiktokenFile);
        string source = tiktokenFile is FileStream fs ? fs.Name : "tiktoken stream";
        var content = new MemoryStream();
        tiktokenFile.CopyTo(content);
        return FromTiktoken(content.ToArray(), source, specialTokens);
    }

    private static LlamaTokenizer FromTiktoken(byte[] content, string source, IReadOnlyDictionary<string, int>? specialTokens)
    {
        var ranks = TiktokenVocabulary.Parse(content, source);
        specialTokens ??= Llama3SpecialTokens.Create();
        return FromRanks(ranks, specialTokens, specialTokens, PreTokenizerPatterns.Compile(PreTokenizerPatterns.Llama3));
    }

    /// <summary>Loads a Hugging Face <c>tokenizer.json</c> holding a byte-level BPE model.</summary>
    /// <exception cref="InvalidDataException">The file is not valid JSON or not a supported byte-level
    /// BPE tokenizer; the message names the file and the problem.</exception>
    public static LlamaTokenizer FromHuggingFaceJson(string tokenizerJsonPath) =>
        HuggingFaceTokenizerJsonReader.Load(tokenizerJsonPath);

    /// <summary>Loads the tokenizer of a checkpoint folder: <c>tokenizer.json</c> when present, else
    /// <c>original/tokenizer.model</c> (tiktoken) with the Llama 3 special tokens. Either must be a regular file
    /// (or a link to one) of at most 64 MiB.</summary>
    /// <exception cref="FileNotFoundException">The folder has neither file.</exception>
    /// <exception cref="InvalidDataException">The file is malformed, not a regular file, or over the cap; the message names it.</exception>
    public static LlamaTokenizer FromCheckpointFolder(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        string json = Path.Combine(dir, "tokenizer.json");
        if (File.Exists(json))
            return FromHuggingFaceJson(json);
        string tiktoken = Path.Combine(dir, "original", "tokenizer.model");
        if (File.Exists(tiktoken))
            return FromTiktoken(IO.UntrustedFile.ReadAllBytes(tiktoken, IO.UntrustedFile.TokenizerMaxBytes), tiktoken, null);
        throw new FileNotFoundException(
            $"No tokenizer in checkpoint folder '{dir}': expected tokenizer.json or original/tokenizer.model.", json);
    }

    /// <summary>Builds a tokenizer with tiktoken's merge rule (lowest-rank pair first, whole piece when it is a token).</summary>
    /// <param name="ranks">Token bytes by rank (= id).</param>
    /// <param name="matched">Tokens recognised whole in text before splitting.</param>
    /// <param name="special">Tokens reported by <see cref="SpecialTokens"/>.</param>
    /// <param name="split">Pre-tokenizer pattern.</param>
    internal static LlamaTokenizer FromRanks(
        IReadOnlyDictionary<int, byte[]> ranks, IReadOnlyDictionary<string, int> matched,
        IReadOnlyDictionary<string, int> special, Regex split)
    {
        using var stream = TiktokenVocabulary.Write(ranks);
        var inner = TiktokenTokenizer.Create(stream, new RegexPreTokenizer(split, matched), normalizer: null, matched);
        return new LlamaTokenizer(inner, new TokenByteTable(ranks, matched), special);
    }
}
