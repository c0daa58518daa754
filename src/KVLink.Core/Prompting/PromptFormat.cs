using KVLink.Core.Tokenization;

namespace KVLink.Core.Prompting;

/// <summary>
/// How a KVLink prompt is laid out for one model: system prefix, document header, link-token ids,
/// memory markers, question suffix and stop tokens. Caches are only valid for the format that made them,
/// so <see cref="Name"/> is part of every cache key.
/// </summary>
public abstract class PromptFormat
{
    /// <summary>A stable name identifying the layout (it changes whenever the produced tokens would).</summary>
    public abstract string Name { get; }

    /// <summary>Tokens before the first document (for the published format: BOS, system turn, user header, <c>&lt;mem_start&gt;</c>).</summary>
    public abstract IReadOnlyList<int> Prefix(LlamaTokenizer tokenizer);

    /// <summary>The tokens of a document placed in <paramref name="slot"/>, encoded on its own.</summary>
    public abstract IReadOnlyList<int> Document(LlamaTokenizer tokenizer, KvLinkDocument document, int slot);

    /// <summary>True when a document's tokens depend on its slot (for example a "Document [n]" header), so caches are per slot.</summary>
    public virtual bool DocumentDependsOnSlot => true;

    /// <summary>
    /// How many of <see cref="Document"/>'s tokens form the header (slot number, title): compression never drops them.
    /// The default, 0, protects nothing.
    /// </summary>
    public virtual int DocumentHeaderLength(LlamaTokenizer tokenizer, KvLinkDocument document, int slot) => 0;

    /// <summary>Like <see cref="DocumentHeaderLength(LlamaTokenizer, KvLinkDocument, int)"/>, given the document's tokens in
    /// that slot, so that a format need not tokenize the document again.</summary>
    internal virtual int DocumentHeaderLength(LlamaTokenizer tokenizer, KvLinkDocument document, int slot, IReadOnlyList<int> documentTokens) =>
        DocumentHeaderLength(tokenizer, document, slot);

    /// <summary>The id of link token <paramref name="index"/> of the document in <paramref name="slot"/>, with <paramref name="linkTokens"/> per document.</summary>
    public abstract int LinkTokenId(int linkTokens, int slot, int index);

    /// <summary>How many distinct link-token ids the format has; K link tokens for N documents need K*N of them.</summary>
    public abstract int LinkTokenIdCount { get; }

    /// <summary>Tokens after the last document: memory end marker, question, end of turn and the assistant header.</summary>
    public abstract IReadOnlyList<int> Suffix(LlamaTokenizer tokenizer, string question);

    /// <summary>Token ids that end generation.</summary>
    public abstract IReadOnlyList<int> StopTokenIds { get; }

    /// <summary>
    /// Checks that the ids this format inserts directly (link tokens, markers, stop tokens) suit
    /// <paramref name="tokenizer"/>; the engine calls it when it is created. The default checks nothing.
    /// </summary>
    /// <exception cref="ArgumentException">An id is not a token, or collides with a functional special token.</exception>
    public virtual void Validate(LlamaTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
    }

    /// <summary>Throws when <paramref name="linkTokens"/> per document cannot be given to <paramref name="documents"/> documents.</summary>
    public void ValidateLinkTokens(int linkTokens, int documents)
    {
        if (linkTokens < 0) throw new ArgumentOutOfRangeException(nameof(linkTokens), linkTokens, "The number of link tokens per document must be >= 0.");
        if ((long)linkTokens * documents > LinkTokenIdCount)
            throw new ArgumentException(
                $"{documents} documents with {linkTokens} link tokens each need {linkTokens * documents} link-token ids, but prompt format '{Name}' has {LinkTokenIdCount}.",
                nameof(documents));
    }

    /// <summary>
    /// The prefix with the caller's system content (see docs/prompt-format.md); null is <see cref="Prefix"/>. A format
    /// that does not override this supports no caller system content.
    /// </summary>
    /// <exception cref="NotSupportedException">The format has no place for caller system content.</exception>
    internal virtual IReadOnlyList<int> ConversationPrefix(LlamaTokenizer tokenizer, string? systemText) =>
        systemText is null ? Prefix(tokenizer) : throw new NotSupportedException($"Prompt format '{Name}' does not support system messages or instructions.");

    /// <summary>
    /// Tokens after the last document for a conversation: the first question, each finished turn's answer and the next
    /// question, then the generation header. With no history this is <see cref="Suffix"/>. A format that does not
    /// override this supports single questions only.
    /// </summary>
    /// <exception cref="NotSupportedException">The format has no multi-turn layout.</exception>
    internal virtual IReadOnlyList<int> ConversationSuffix(LlamaTokenizer tokenizer, IReadOnlyList<ChatTurn> history, string question) =>
        history.Count == 0 ? Suffix(tokenizer, question) : throw new NotSupportedException($"Prompt format '{Name}' does not support conversations with earlier turns.");

    /// <summary>Lays out a prompt: prefix, then each document followed by its link tokens, then the suffix.</summary>
    internal PromptLayout Build(LlamaTokenizer tokenizer, IReadOnlyList<IReadOnlyList<int>> documentTokens, string question, int linkTokens) =>
        Build(tokenizer, documentTokens, ConversationPrompt.Single(question), linkTokens);

    /// <summary>Lays out a conversation: prefix (with the caller's system content), each document followed by its link
    /// tokens, then the turns and the generation header (<see cref="ConversationSuffix"/>).</summary>
    internal PromptLayout Build(LlamaTokenizer tokenizer, IReadOnlyList<IReadOnlyList<int>> documentTokens, ConversationPrompt conversation, int linkTokens) =>
        Build(PrefixOf(tokenizer, conversation), documentTokens, SuffixOf(tokenizer, conversation), linkTokens);

    /// <summary>The prompt's tokens before the documents: <see cref="Prefix"/>, or <see cref="ConversationPrefix"/> with system content.</summary>
    internal IReadOnlyList<int> PrefixOf(LlamaTokenizer tokenizer, ConversationPrompt conversation) =>
        conversation.SystemText is null ? Prefix(tokenizer) : ConversationPrefix(tokenizer, conversation.SystemText);

    /// <summary>The prompt's tokens after the documents: <see cref="Suffix"/>, or <see cref="ConversationSuffix"/> with earlier turns.</summary>
    internal IReadOnlyList<int> SuffixOf(LlamaTokenizer tokenizer, ConversationPrompt conversation) =>
        conversation.History.Count == 0 ? Suffix(tokenizer, conversation.Question) : ConversationSuffix(tokenizer, conversation.History, conversation.Question);

    /// <summary>Lays out a prompt from its parts' tokens: <paramref name="prefix"/>, each document followed by its link
    /// tokens, then <paramref name="suffix"/> (what <see cref="ConversationPrefix"/> and <see cref="ConversationSuffix"/> give).</summary>
    internal PromptLayout Build(IReadOnlyList<int> prefix, IReadOnlyList<IReadOnlyList<int>> documentTokens, IReadOnlyList<int> suffix, int linkTokens)
    {
        ValidateLinkTokens(linkTokens, documentTokens.Count);
        var tokens = new List<int>(prefix);
        int prefixLength = tokens.Count;
        var segments = new List<int>(Enumerable.Repeat(0, tokens.Count));
        var spans = new List<DocumentSpan>();
        for (int slot = 0; slot < documentTokens.Count; slot++)
        {
            spans.Add(new DocumentSpan(slot, tokens.Count, documentTokens[slot]));
            tokens.AddRange(documentTokens[slot]);
            segments.AddRange(Enumerable.Repeat(slot + 1, documentTokens[slot].Count));
            for (int t = 0; t < linkTokens; t++)
            {
                tokens.Add(LinkTokenId(linkTokens, slot, t));
                segments.Add(0);
            }
        }
        tokens.AddRange(suffix);
        segments.AddRange(Enumerable.Repeat(0, suffix.Count));
        return new PromptLayout(tokens, segments, spans, prefixLength);
    }
}
