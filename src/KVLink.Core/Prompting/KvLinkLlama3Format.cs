using System.Security.Cryptography;
using System.Text;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Prompting;

/// <summary>
/// The layout of the published KVLink checkpoints (Shiyu-Lab/Llama1B-KVLink5, Llama3B-KVLink5), byte for byte:
/// <code>
/// &lt;|begin_of_text|&gt;&lt;|start_header_id|&gt;system&lt;|end_header_id|&gt;\n\n{system}&lt;|eot_id|&gt;&lt;|start_header_id|&gt;user&lt;|end_header_id|&gt;\n\n
/// &lt;mem_start&gt; Document [1](Title: t1) text1\n + link ids ... &lt;mem_end&gt;{question}
/// &lt;|eot_id|&gt;&lt;|start_header_id|&gt;assistant&lt;|end_header_id|&gt;\n\n
/// </code>
/// Each piece is tokenized separately (special tokens recognised in the text) and the ids concatenated.
/// Link token t of slot j has id <c>LinkTokenStart + K*j + t</c>. Other models (including small ones we
/// train) use the same layout with their own ids through the constructor; <see cref="Validate"/> checks the ids
/// against a tokenizer (the engine calls it).
/// </summary>
public sealed class KvLinkLlama3Format : PromptFormat
{
    /// <summary>The system text of the published evaluation (the typo "a intelligent" is original).</summary>
    public const string PublishedSystemText =
        "You are a intelligent AI assistant. Please answer questions based on the user's instruction. " +
        "Below are some reference documents that may help you in answering the user's question.";

    /// <summary>Size of a Llama 3 vocabulary: 128,000 BPE ranks and 256 special tokens.</summary>
    public const int Llama3VocabSize = 128256;

    /// <summary>Id of link token 0 of slot 0 in the published checkpoints (link token t of slot j is <c>128011 + K*j + t</c>).</summary>
    public const int PublishedLinkTokenStart = 128011;

    /// <summary>Id of <c>&lt;mem_start&gt;</c> in the published checkpoints.</summary>
    public const int PublishedMemStart = 128254;

    /// <summary>Id of <c>&lt;mem_end&gt;</c> in the published checkpoints.</summary>
    public const int PublishedMemEnd = 128255;

    /// <summary>The format of the published Llama-3.2 KVLink checkpoints: link ids 128011..128253, mem 128254/128255, stop 128009/128001.</summary>
    public static KvLinkLlama3Format Published { get; } = new(PublishedSystemText, PublishedLinkTokenStart, PublishedMemStart - PublishedLinkTokenStart,
        PublishedMemStart, PublishedMemEnd, [Llama3ChatFormat.Ids.EotId, Llama3ChatFormat.Ids.EndOfText]);

    private string? _name;

    /// <summary>
    /// The layout for a tokenizer, checked against it (<see cref="Validate"/>). A Llama-3-sized vocabulary
    /// (<see cref="Llama3VocabSize"/> ids) gets the published numeric ids, whatever the release calls them: Llama 3.0
    /// and 3.1/3.2 name the reserved tokens differently, and the published checkpoints were trained on the ids.
    /// A vocabulary of another size (a small model trained here) gets the ids derived from the Llama 3.1 names
    /// (<see cref="FromReservedTokenNames"/>). Generation stops on <c>&lt;|eot_id|&gt;</c> and <c>&lt;|end_of_text|&gt;</c>.
    /// </summary>
    /// <exception cref="ArgumentException">The tokenizer lacks a needed token, or an id the format would insert is not
    /// a token or is a functional special token (the message names the id and what it collides with).</exception>
    public static KvLinkLlama3Format FromTokenizer(LlamaTokenizer tokenizer, string systemText = PublishedSystemText)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (tokenizer.VocabSize != Llama3VocabSize)
            return FromReservedTokenNames(tokenizer, systemText);
        var format = new KvLinkLlama3Format(systemText, PublishedLinkTokenStart, PublishedMemStart - PublishedLinkTokenStart,
            PublishedMemStart, PublishedMemEnd, StopTokens(tokenizer));
        format.Validate(tokenizer);
        return format;
    }

    /// <summary>
    /// The layout derived from Llama 3.1/3.2 special-token names: link tokens from <c>&lt;|reserved_special_token_3|&gt;</c>
    /// up to <c>&lt;mem_start&gt;</c> = <c>&lt;|reserved_special_token_246|&gt;</c>, <c>&lt;mem_end&gt;</c> =
    /// <c>&lt;|reserved_special_token_247|&gt;</c>, stop on <c>&lt;|eot_id|&gt;</c> and <c>&lt;|end_of_text|&gt;</c>;
    /// checked against the tokenizer (<see cref="Validate"/>). With Llama 3.0 names this would put link tokens on
    /// the chat header and end-of-turn ids, which the check rejects.
    /// </summary>
    /// <exception cref="ArgumentException">The tokenizer lacks one of those special tokens, or the derived ids fail the check.</exception>
    public static KvLinkLlama3Format FromReservedTokenNames(LlamaTokenizer tokenizer, string systemText = PublishedSystemText)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int linkStart = Id(tokenizer, "<|reserved_special_token_3|>");
        int memStart = Id(tokenizer, "<|reserved_special_token_246|>");
        int memEnd = Id(tokenizer, "<|reserved_special_token_247|>");
        if (memStart <= linkStart) throw new ArgumentException("The tokenizer's reserved special tokens are not in Llama-3 order.", nameof(tokenizer));
        var format = new KvLinkLlama3Format(systemText, linkStart, memStart - linkStart, memStart, memEnd, StopTokens(tokenizer));
        format.Validate(tokenizer);
        return format;
    }

    private static int Id(LlamaTokenizer tokenizer, string name) =>
        tokenizer.TokenToId(name) ?? throw new ArgumentException($"The tokenizer has no special token '{name}' needed by the KVLink prompt format.", nameof(tokenizer));

    private static int[] StopTokens(LlamaTokenizer tokenizer) =>
        [Id(tokenizer, Llama3ChatFormat.EotToken), Id(tokenizer, Llama3ChatFormat.EndOfTextToken)];

    /// <summary>Checks every id this format inserts: each link-token id and both memory markers must be a token of
    /// <paramref name="tokenizer"/> and not a functional special token (<see cref="LlamaTokenizer.FunctionalTokens"/>:
    /// bos/eos, end of turn or message, chat headers, tool and padding tokens, whatever the chat template uses), and
    /// no id may serve twice; stop tokens must exist.</summary>
    /// <exception cref="ArgumentException">The message names the id, what it collides with and how to set the format explicitly.</exception>
    public override void Validate(LlamaTokenizer tokenizer)
    {
        var inserted = Enumerable.Range(0, LinkTokenIdCount)
            .Select(i => (LinkTokenStart + i, $"link-token id {i} of {LinkTokenIdCount} ({LinkTokenStart}..{LinkTokenStart + LinkTokenIdCount - 1})"))
            .Append((MemStart, "<mem_start>"))
            .Append((MemEnd, "<mem_end>"));
        FormatTokenCheck.Check(tokenizer, Name, inserted, StopTokenIds);
    }

    /// <summary>Creates the layout with a model's own ids.</summary>
    /// <param name="systemText">The system prompt.</param>
    /// <param name="linkTokenStart">Id of the first link token.</param>
    /// <param name="linkTokenIdCount">How many consecutive ids from <paramref name="linkTokenStart"/> are link tokens.</param>
    /// <param name="memStart">Id of <c>&lt;mem_start&gt;</c>.</param>
    /// <param name="memEnd">Id of <c>&lt;mem_end&gt;</c>.</param>
    /// <param name="stopTokenIds">Ids that end generation.</param>
    public KvLinkLlama3Format(string systemText, int linkTokenStart, int linkTokenIdCount, int memStart, int memEnd, IReadOnlyList<int> stopTokenIds)
    {
        ArgumentNullException.ThrowIfNull(systemText);
        ArgumentOutOfRangeException.ThrowIfNegative(linkTokenStart);
        ArgumentOutOfRangeException.ThrowIfNegative(linkTokenIdCount);
        SystemText = systemText;
        LinkTokenStart = linkTokenStart;
        LinkTokenIdCount = linkTokenIdCount;
        MemStart = memStart;
        MemEnd = memEnd;
        StopTokenIds = stopTokenIds;
    }

    /// <summary>
    /// False (the default): special-token names written in a document's text or title or in a question (for example
    /// <c>&lt;|eot_id|&gt;</c> or a link token's name) are encoded as the plain text they are, so a document cannot close
    /// the memory block, start a turn or impersonate a link token. True encodes them as the special tokens (only for
    /// text you trust); it is part of <see cref="Name"/>, so the two settings never share caches.
    /// </summary>
    public bool SpecialTokensInText { get; init; }

    /// <summary>
    /// False (the default, the published layout): a document is headed <c>Document [{slot+1}](Title: …)</c>, so its tokens,
    /// and therefore its cache, belong to one slot. True: <c>Document (Title: …)</c>, with no number, so a document's tokens
    /// and cache are the same in every slot and one cache per document serves any slot exactly
    /// (<see cref="PromptFormat.DocumentDependsOnSlot"/> is false). Only for models trained with this header (the demo
    /// model is; its <c>kvlink_prompt.json</c> says so). Part of <see cref="Name"/>. Link-token ids stay per slot.
    /// </summary>
    public bool SlotFreeHeader { get; init; }

    /// <summary>This format with <see cref="SlotFreeHeader"/> set to <paramref name="slotFree"/> (everything else unchanged).</summary>
    public KvLinkLlama3Format WithSlotFreeHeader(bool slotFree = true) =>
        new(SystemText, LinkTokenStart, LinkTokenIdCount, MemStart, MemEnd, StopTokenIds)
        {
            SpecialTokensInText = SpecialTokensInText,
            SlotFreeHeader = slotFree,
        };

    /// <inheritdoc/>
    public override bool DocumentDependsOnSlot => !SlotFreeHeader;

    /// <summary>The system prompt.</summary>
    public string SystemText { get; }

    /// <summary>Id of the first link token.</summary>
    public int LinkTokenStart { get; }

    /// <summary>Id of <c>&lt;mem_start&gt;</c>.</summary>
    public int MemStart { get; }

    /// <summary>Id of <c>&lt;mem_end&gt;</c>.</summary>
    public int MemEnd { get; }

    /// <inheritdoc/>
    public override string Name => _name ??= "kvlink-llama3-v2-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
        $"{SystemText}\u0001{LinkTokenStart}\u0001{LinkTokenIdCount}\u0001{MemStart}\u0001{MemEnd}" + (SpecialTokensInText ? "\u0001special-in-text" : "")
        + (SlotFreeHeader ? "\u0001slot-free-header" : ""))))[..12];

    /// <inheritdoc/>
    public override int LinkTokenIdCount { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<int> StopTokenIds { get; }

    /// <inheritdoc/>
    public override IReadOnlyList<int> Prefix(LlamaTokenizer tokenizer) =>
    [
        .. tokenizer.Encode(Llama3ChatFormat.BeginOfTextToken + Llama3ChatFormat.Message("system", SystemText) + Llama3ChatFormat.Header("user")),
        MemStart,
    ];

    /// <summary>The text of a document in a slot: <c>Document [{slot+1}](Title: {title}) {text}\n</c>.</summary>
    public static string DocumentText(KvLinkDocument document, int slot) =>
        $"Document [{slot + 1}](Title: {document.Title ?? ""}) {document.Text}\n";

    /// <summary>The text of a document under the slot-free header: <c>Document (Title: {title}) {text}\n</c>, the same in every slot.</summary>
    public static string SlotFreeDocumentText(KvLinkDocument document) =>
        $"Document (Title: {document.Title ?? ""}) {document.Text}\n";

    /// <inheritdoc/>
    public override IReadOnlyList<int> Document(LlamaTokenizer tokenizer, KvLinkDocument document, int slot) =>
        UserText(tokenizer, SlotFreeHeader ? SlotFreeDocumentText(document) : DocumentText(document, slot));

    /// <summary>
    /// The tokens of the header (<c>Document [{slot+1}](Title: {title})</c>, or <c>Document (Title: {title})</c> when
    /// <see cref="SlotFreeHeader"/>) when they begin the document's tokens (they do with byte-level BPE, which attaches
    /// the following space to the first word of the text); else the longest common prefix.
    /// </summary>
    public override int DocumentHeaderLength(LlamaTokenizer tokenizer, KvLinkDocument document, int slot)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(document);
        return DocumentHeaderLength(tokenizer, document, slot, Document(tokenizer, document, slot));
    }

    /// <inheritdoc/>
    internal override int DocumentHeaderLength(LlamaTokenizer tokenizer, KvLinkDocument document, int slot, IReadOnlyList<int> full)
    {
        var header = UserText(tokenizer, SlotFreeHeader ? $"Document (Title: {document.Title ?? ""})" : $"Document [{slot + 1}](Title: {document.Title ?? ""})");
        int n = 0;
        while (n < header.Count && n < full.Count && header[n] == full[n]) n++;
        return n;
    }

    /// <inheritdoc/>
    public override int LinkTokenId(int linkTokens, int slot, int index) => LinkTokenStart + linkTokens * slot + index;

    /// <inheritdoc/>
    public override IReadOnlyList<int> Suffix(LlamaTokenizer tokenizer, string question) =>
    [
        MemEnd,
        .. UserText(tokenizer, question),
        .. tokenizer.Encode(Llama3ChatFormat.EotToken + Llama3ChatFormat.Header("assistant")),
    ];

    /// <summary>
    /// The prefix with the caller's system content added after the trained <see cref="SystemText"/>, separated by a blank
    /// line (docs/prompt-format.md says why it is appended rather than put in place of it): BOS and the system header,
    /// then <c>"\n\n" + SystemText + "\n\n" + systemText</c> encoded as plain text (a caller cannot open a turn from it),
    /// then <c>&lt;|eot_id|&gt;</c>, the user header and <c>&lt;mem_start&gt;</c>.
    /// </summary>
    internal override IReadOnlyList<int> ConversationPrefix(LlamaTokenizer tokenizer, string? systemText) => systemText is null ? Prefix(tokenizer) :
    [
        .. tokenizer.Encode(Llama3ChatFormat.BeginOfTextToken + Llama3ChatFormat.StartHeaderToken + "system" + Llama3ChatFormat.EndHeaderToken),
        .. tokenizer.EncodeText("\n\n" + (SystemText.Length == 0 ? systemText : SystemText + "\n\n" + systemText)),
        .. tokenizer.Encode(Llama3ChatFormat.EotToken + Llama3ChatFormat.Header("user")),
        MemStart,
    ];

    /// <summary>
    /// A conversation after the documents: <c>&lt;mem_end&gt;</c>, the first question, then for every finished turn
    /// <c>&lt;|eot_id|&gt;</c>, the assistant header, its answer and the next user header with the next question, and
    /// finally <c>&lt;|eot_id|&gt;</c> and the assistant header. Questions and answers are encoded as text on their own;
    /// the same tokens as the multi-turn training samples (<c>TrainingExampleBuilder</c>).
    /// </summary>
    internal override IReadOnlyList<int> ConversationSuffix(LlamaTokenizer tokenizer, IReadOnlyList<ChatTurn> history, string question)
    {
        var eotAssistant = tokenizer.Encode(Llama3ChatFormat.EotToken + Llama3ChatFormat.Header("assistant"));
        var eot = tokenizer.Encode(Llama3ChatFormat.EotToken);
        var user = tokenizer.Encode(Llama3ChatFormat.Header("user"));
        var tokens = new List<int> { MemEnd };
        for (int i = 0; i < history.Count; i++)
        {
            tokens.AddRange(UserText(tokenizer, history[i].User));
            tokens.AddRange(eotAssistant);
            tokens.AddRange(UserText(tokenizer, history[i].Assistant));
            tokens.AddRange(eot);
            tokens.AddRange(user);
        }
        tokens.AddRange(UserText(tokenizer, question));
        tokens.AddRange(eotAssistant);
        return tokens;
    }

    /// <summary>Text that comes from documents and questions: special-token names in it stay plain text unless <see cref="SpecialTokensInText"/>.</summary>
    private IReadOnlyList<int> UserText(LlamaTokenizer tokenizer, string text) =>
        SpecialTokensInText ? tokenizer.Encode(text) : tokenizer.EncodeText(text);
}
