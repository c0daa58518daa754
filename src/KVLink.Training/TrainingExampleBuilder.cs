using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;

namespace KVLink.Training;

/// <summary>
/// Turns samples into training sequences. A QA sample becomes the KVLink prompt (each document followed by its
/// link tokens) + answer + <c>&lt;|eot_id|&gt;</c>, with only the answer and the end-of-turn token as targets;
/// blocked under the segment mask or with full causal attention over the same tokens. Plain text becomes
/// <c>&lt;|begin_of_text|&gt;</c> + text + <c>&lt;|end_of_text|&gt;</c>, every token a target, causal.
/// </summary>
public sealed class TrainingExampleBuilder
{
    private readonly int _eot;
    private readonly int _bos;
    private readonly int _eos;

    /// <summary>Creates a builder.</summary>
    /// <param name="tokenizer">The model's tokenizer (with the Llama-3 special tokens).</param>
    /// <param name="format">The KVLink prompt layout.</param>
    /// <param name="linkTokens">Link tokens per document (K).</param>
    /// <param name="maxLength">Longest sequence; plain text is truncated to it, longer QA examples are rejected.</param>
    /// <param name="answerPrefix">Text put before every answer (see <see cref="AnswerPrefix"/>).</param>
    /// <param name="documentLoss">Also train on the document tokens (see <see cref="DocumentLoss"/>).</param>
    public TrainingExampleBuilder(LlamaTokenizer tokenizer, KvLinkLlama3Format format, int linkTokens, int maxLength = 4096,
        string answerPrefix = "", bool documentLoss = false)
    {
        ArgumentNullException.ThrowIfNull(answerPrefix);
        AnswerPrefix = answerPrefix;
        DocumentLoss = documentLoss;
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(format);
        ArgumentOutOfRangeException.ThrowIfNegative(linkTokens);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 2);
        Tokenizer = tokenizer;
        Format = format;
        LinkTokens = linkTokens;
        MaxLength = maxLength;
        int Id(string name) => tokenizer.TokenToId(name) ?? throw new ArgumentException($"The tokenizer has no special token '{name}'.", nameof(tokenizer));
        _eot = Id(Llama3ChatFormat.EotToken);
        _bos = Id(Llama3ChatFormat.BeginOfTextToken);
        _eos = Id(Llama3ChatFormat.EndOfTextToken);
    }

    /// <summary>The tokenizer.</summary>
    public LlamaTokenizer Tokenizer { get; }

    /// <summary>The prompt layout.</summary>
    public KvLinkLlama3Format Format { get; }

    /// <summary>Link tokens per document.</summary>
    public int LinkTokens { get; }

    /// <summary>Longest sequence.</summary>
    public int MaxLength { get; }

    /// <summary>
    /// Text put before every answer ("" by default). The demo model uses " " so that an answer's words are the very tokens
    /// (space-prefixed, as byte-level BPE splits them inside sentences) that the documents contain: its answers are copies.
    /// </summary>
    public string AnswerPrefix { get; }

    /// <summary>
    /// When true, the document tokens are targets too (language modelling on the documents, each predicted inside its own
    /// segment when blocked); off by default, as in the method's answer-only loss.
    /// </summary>
    public bool DocumentLoss { get; }

    /// <summary>The prompt layout of a QA sample (without the answer).</summary>
    internal PromptLayout Layout(QaSample sample, int? linkTokens = null)
    {
        ArgumentNullException.ThrowIfNull(sample);
        var docs = sample.Documents.Select((d, slot) => Format.Document(Tokenizer, d, slot)).ToList();
        return Format.Build(Tokenizer, docs, sample.Question, linkTokens ?? LinkTokens);
    }

    /// <summary>
    /// A QA example: the prompt, then the answer and <c>&lt;|eot_id|&gt;</c> as targets; then each follow-up turn (user header,
    /// question, assistant header) with its answer and <c>&lt;|eot_id|&gt;</c> as targets. Follow-ups see everything before them.
    /// </summary>
    /// <param name="sample">The sample.</param>
    /// <param name="attention">Blocked (segment mask) or causal.</param>
    /// <param name="linkTokens">Link tokens per document for this example; <see cref="LinkTokens"/> when null.</param>
    /// <exception cref="ArgumentException">The example is longer than <see cref="MaxLength"/>.</exception>
    public TrainingExample FromQa(QaSample sample, TrainingAttention attention, int? linkTokens = null)
    {
        if (linkTokens is < 0) throw new ArgumentOutOfRangeException(nameof(linkTokens), linkTokens, "Must be >= 0.");
        var layout = Layout(sample, linkTokens);
        var tokens = new List<int>(layout.Tokens);
        var segments = new List<int>(layout.Segments);
        var targets = new List<bool>(layout.Segments.Select((segment, i) => DocumentLoss && segment > 0 && i > 0 && layout.Segments[i - 1] == segment));
        void Add(IReadOnlyList<int> ids, bool target)
        {
            tokens.AddRange(ids);
            segments.AddRange(Enumerable.Repeat(0, ids.Count));
            targets.AddRange(Enumerable.Repeat(target, ids.Count));
        }
        Add([.. Tokenizer.Encode(AnswerPrefix + sample.Answer), _eot], true);
        foreach (var turn in sample.FollowUps ?? [])
        {
            Add(Tokenizer.Encode(Llama3ChatFormat.Header("user") + turn.Question + Llama3ChatFormat.EotToken + Llama3ChatFormat.Header("assistant")), false);
            Add([.. Tokenizer.Encode(AnswerPrefix + turn.Answer), _eot], true);
        }
        if (tokens.Count > MaxLength)
            throw new ArgumentException($"The QA example has {tokens.Count} tokens, more than the maximum of {MaxLength}.", nameof(sample));
        return new TrainingExample(tokens, targets, attention, segments);
    }

    /// <summary>A plain-text example (truncated to <see cref="MaxLength"/>): every token after the first is a target, causal.</summary>
    public TrainingExample FromText(TextSample sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        var tokens = new List<int> { _bos };
        tokens.AddRange(Tokenizer.Encode(sample.Text));
        tokens.Add(_eos);
        if (tokens.Count > MaxLength) tokens.RemoveRange(MaxLength, tokens.Count - MaxLength);
        var targets = Enumerable.Range(0, tokens.Count).Select(i => i > 0).ToArray();
        return new TrainingExample(tokens, targets, TrainingAttention.Causal);
    }
}
