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
    private readonly Dictionary<int, string> _functional = [];
    private readonly Lazy<Tokenizer> _plainText;

    internal LlamaTokenizer(Tokenizer inner, TokenByteTable bytes, IReadOnlyDictionary<string, int> specialTokens, string specialTokenSource, Func<Tokenizer>? plainText = null)
    {
        InnerTokenizer = inner;
        _plainText = new Lazy<Tokenizer>(plainText ?? (() => inner));
        _bytes = bytes;
        _special = new Dictionary<string, int>(specialTokens, StringComparer.Ordinal);
        SpecialTokenSource = specialTokenSource;
        foreach (var (name, id) in _special)
            if (Llama3SpecialTokens.FunctionalNames.Contains(name))
                _functional.TryAdd(id, $"{name} (a Llama 3 control token)");
    }

    /// <summary>Where the special-token names came from, e.g. "tokenizer.json added_tokens" or
    /// "built-in Llama 3.0 table (config.json has no llama3 rope_scaling)".</summary>
    public string SpecialTokenSource { get; }

    /// <summary>Special tokens with a job (text boundaries, chat headers, end of turn, tool calls, padding, the
    /// tokens <c>tokenizer_config.json</c> names as bos/eos/pad/unk or its chat template uses), id to a description.
    /// Prompt formats refuse to use them as link tokens or memory markers.</summary>
    public IReadOnlyDictionary<int, string> FunctionalTokens => _functional;

    /// <summary>The Microsoft.ML.Tokenizers tokenizer that does the splitting and merging.</summary>
    public Tokenizer InnerTokenizer { get; }

    /// <summary>Special token names and their ids.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens => _special;

    /// <summary>Largest token id + 1 (ids below it may be unused when the vocabulary has gaps).</summary>
    public int VocabSize => _bytes.Count;

    private long _textsEncoded;

    /// <summary>Texts encoded so far by <see cref="Encode"/> and <see cref="EncodeText"/> (how the engine is checked to
    /// tokenize each text of a request once).</summary>
    internal long TextsEncoded => Interlocked.Read(ref _textsEncoded);

    /// <summary>Token ids of <paramref name="text"/>, without a beginning-of-text token.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        Interlocked.Increment(ref _textsEncoded);
        return InnerTokenizer.EncodeToIds(text);
    }

    /// <summary>
    /// Token ids of text that comes from users (documents, questions): special-token names written in it, such as
    /// <c>&lt;|eot_id|&gt;</c>, are encoded as the plain text they are, never as the special tokens, so untrusted text
    /// cannot end a turn, open a header or impersonate a link token. Other text encodes exactly as <see cref="Encode"/>.
    /// </summary>
    public IReadOnlyList<int> EncodeText(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        Interlocked.Increment(ref _textsEncoded);
        return _plainText.Value.EncodeToIds(text);
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

    /// <summary>True when <paramref name="id"/> is a token (ordinary or special) of this vocabulary.</summary>
    public bool HasToken(int id) => _bytes.Contains(id);

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
        var ranks = ReadRanks(tiktokenFile);
        string source = specialTokens is null ? "built-in Llama 3.1/3.2 table (FromTiktoken default)" : "supplied to FromTiktoken";
        specialTokens ??= Llama3SpecialTokens.Create();
        return FromRanks(ranks, specialTokens, specialTokens, PreTokenizerPatterns.Llama3, source);
    }

    private static Dictionary<int, byte[]> ReadRanks(Stream tiktokenFile)
    {
        string name = tiktokenFile is FileStream fs ? fs.Name : "tiktoken stream";
        var content = new MemoryStream();
        tiktokenFile.CopyTo(content);
        return TiktokenVocabulary.Parse(content.ToArray(), name);
    }

    /// <summary>Loads a Hugging Face <c>tokenizer.json</c> holding a byte-level BPE model.</summary>
    /// <exception cref="InvalidDataException">The file is not valid JSON or not a supported byte-level
    /// BPE tokenizer; the message names the file and the problem.</exception>
    public static LlamaTokenizer FromHuggingFaceJson(string tokenizerJsonPath) =>
        HuggingFaceTokenizerJsonReader.Load(tokenizerJsonPath);

    /// <summary>Loads the tokenizer of a checkpoint folder: <c>tokenizer.json</c> when present, else
    /// <c>original/tokenizer.model</c> (tiktoken). The tiktoken file has no special-token names: they come from the
    /// folder's <c>tokenizer_config.json</c> (<c>added_tokens_decoder</c>), else from the built-in table of the Llama 3
    /// release the folder's <c>config.json</c> or <c>original/params.json</c> points to (3.0 and 3.1/3.2 name the same
    /// ids differently); <see cref="SpecialTokenSource"/> says which. A <c>tokenizer_config.json</c> also marks the
    /// tokens it names as bos/eos/pad/unk or its chat template uses as <see cref="FunctionalTokens"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="FileNotFoundException">The folder has neither file.</exception>
    /// <remarks>Either file must be a regular file (or a link to one) of at most 64 MiB.</remarks>
    /// <exception cref="InvalidDataException">A tokenizer or config file is malformed, not a regular file, or over the cap (the message names it).</exception>
    public static LlamaTokenizer FromCheckpointFolder(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        IO.CheckpointFolder.ThrowIfMissing(dir);
        var config = TokenizerConfigFile.TryRead(dir);
        string json = Path.Combine(dir, "tokenizer.json");
        string tiktoken = Path.Combine(dir, "original", "tokenizer.model");
        LlamaTokenizer tokenizer;
        if (File.Exists(json))
            tokenizer = FromHuggingFaceJson(json);
        else if (File.Exists(tiktoken))
        {
            var ranks = TiktokenVocabulary.Parse(IO.UntrustedFile.ReadAllBytes(tiktoken, IO.UntrustedFile.TokenizerMaxBytes), tiktoken);
            var (matched, special, source) = CheckpointSpecialTokens.Resolve(dir, config);
            tokenizer = FromRanks(ranks, matched, special, PreTokenizerPatterns.Llama3, source);
        }
        else
            throw new FileNotFoundException(
                $"No tokenizer in checkpoint folder '{dir}': expected tokenizer.json or original/tokenizer.model.", json);
        if (config is not null)
            tokenizer.MarkConfigFunctionalTokens(config);
        return tokenizer;
    }

    private void MarkConfigFunctionalTokens(TokenizerConfigFile config)
    {
        foreach (var (name, role) in config.RoleTokens)
            if (_special.TryGetValue(name, out int id))
                _functional.TryAdd(id, $"{name} ({role} in {TokenizerConfigFile.FileName})");
        if (config.ChatTemplate.Length == 0)
            return;
        foreach (var (name, id) in _special)
            if (config.ChatTemplate.Contains(name, StringComparison.Ordinal))
                _functional.TryAdd(id, $"{name} (used by the chat template in {TokenizerConfigFile.FileName})");
    }

    /// <summary>Builds a tokenizer with tiktoken's merge rule (lowest-rank pair first, whole piece when it is a token).</summary>
    /// <param name="ranks">Token bytes by rank (= id).</param>
    /// <param name="matched">Tokens recognised whole in text before splitting.</param>
    /// <param name="special">Tokens reported by <see cref="SpecialTokens"/>.</param>
    /// <param name="splitPattern">Pre-tokenizer pattern (see <see cref="PreTokenizerPatterns.Create"/>).</param>
    /// <param name="specialTokenSource">Where the special-token names came from (<see cref="SpecialTokenSource"/>).</param>
    internal static LlamaTokenizer FromRanks(
        IReadOnlyDictionary<int, byte[]> ranks, IReadOnlyDictionary<string, int> matched,
        IReadOnlyDictionary<string, int> special, string splitPattern, string specialTokenSource)
    {
        using var stream = TiktokenVocabulary.Write(ranks);
        var inner = TiktokenTokenizer.Create(stream, PreTokenizerPatterns.Create(splitPattern, matched), normalizer: null, matched);
        // Built on first use of EncodeText: the same ranks, with the special tokens neither matched nor known.
        var plainMatched = matched.Where(t => !special.ContainsKey(t.Key)).ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
        Tokenizer PlainText()
        {
            using var again = TiktokenVocabulary.Write(ranks);
            return TiktokenTokenizer.Create(again, PreTokenizerPatterns.Create(splitPattern, plainMatched), normalizer: null, plainMatched);
        }
        return new LlamaTokenizer(inner, new TokenByteTable(ranks, matched), special, specialTokenSource, PlainText);
    }
}
