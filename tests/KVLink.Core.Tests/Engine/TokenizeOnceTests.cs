using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// Each distinct text of a request is tokenized once: the prefix (with system content), every document in the slot whose
/// tokens it uses, and the suffix (turns and question). Counted on the engine's tokenizer
/// (<c>LlamaTokenizer.TextsEncoded</c>) against the format's own calls for those parts, on a cache
/// hit, on a miss (encoded on demand), in full prefill, for a conversation and for a compressed document.
/// </summary>
public class TokenizeOnceTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private const string Question = "Which word comes first?";
    private static readonly GenerationOptions Short = new() { MaxNewTokens = 2, StopTokenIds = [] };

    private long Texts(Action tokenize)
    {
        long before = fx.Tokenizer.TextsEncoded;
        tokenize();
        return fx.Tokenizer.TextsEncoded - before;
    }

    /// <summary>Texts the format tokenizes for the request's parts: prefix, suffix, and each document in its token slot.</summary>
    private long Expected(ConversationPrompt conversation, IReadOnlyList<KvLinkDocument> docs, Func<int, int> tokenSlot, double keep = 1) =>
        Texts(() => fx.Format.PrefixOf(fx.Tokenizer, conversation)) + Texts(() => fx.Format.SuffixOf(fx.Tokenizer, conversation))
        + docs.Select((d, j) => Texts(() =>
        {
            var full = fx.Format.Document(fx.Tokenizer, d, tokenSlot(j));
            if (keep < 1) fx.Format.DocumentHeaderLength(fx.Tokenizer, d, tokenSlot(j), full); // the header, once
        })).Sum();

    private static KvLinkDocument[] Docs(int n) => [.. Enumerable.Range(0, n).Select(i => CheckpointFixture.Doc(i, 4 + i))];

    private async Task<long> Counted(Func<Task> request)
    {
        long before = fx.Tokenizer.TextsEncoded;
        await request();
        return fx.Tokenizer.TextsEncoded - before;
    }

    [Theory]
    [InlineData(SlotPolicy.Shared, ContextMode.KvLink)] // every cache stored: a hit
    [InlineData(SlotPolicy.Exact, ContextMode.KvLink)] // slots 1-2 not stored yet: encoded on demand, a miss
    [InlineData(SlotPolicy.Shared, ContextMode.FullPrefill)]
    public async Task A_question_tokenizes_each_text_once(SlotPolicy policy, ContextMode mode)
    {
        await using var engine = fx.Engine(linkTokens: 1, slotPolicy: policy, mode: mode);
        var docs = Docs(3);
        var ids = new List<string>();
        foreach (var d in docs) ids.Add(await engine.PrecomputeAsync(d));
        Func<int, int> tokenSlot = policy == SlotPolicy.Exact || mode == ContextMode.FullPrefill ? j => j : _ => 0;
        long expected = Expected(ConversationPrompt.Single(Question), docs, tokenSlot);

        long counted = await Counted(() => engine.GenerateAsync(Question, ids, Short));

        Assert.Equal(expected, counted);
        if (policy == SlotPolicy.Exact) Assert.Equal(5, engine.Store.Statistics.Entries); // the miss was real: slots 1 and 2 were encoded now
    }

    [Fact]
    public async Task A_conversation_with_system_content_and_turns_tokenizes_each_text_once()
    {
        await using var engine = fx.Engine(linkTokens: 1);
        var docs = Docs(2);
        var ids = new List<string>();
        foreach (var d in docs) ids.Add(await engine.PrecomputeAsync(d));
        ChatMessage[] messages =
        [
            new(ChatRole.System, "Answer briefly."),
            new(ChatRole.User, "First question?"),
            new(ChatRole.Assistant, "w3 w10"),
            new(ChatRole.User, Question),
        ];
        var conversation = ChatTranscript.Read(messages);
        Assert.Equal("Answer briefly.", conversation.SystemText);
        Assert.Single(conversation.History);
        long expected = Expected(conversation, docs, _ => 0);

        long counted = await Counted(() => engine.ChatAsync(messages, ids, Short));

        Assert.Equal(expected, counted);
    }

    [Fact]
    public async Task A_compressed_document_tokenizes_its_text_and_its_header_once()
    {
        await using var engine = fx.Engine(linkTokens: 1);
        var doc = CheckpointFixture.Doc(7, 24) with { KeepFraction = 0.5 };
        string id = await engine.PrecomputeAsync(doc);
        long expected = Expected(ConversationPrompt.Single(Question), [doc], _ => 0, keep: 0.5);

        long counted = await Counted(() => engine.GenerateAsync(Question, [id], Short));

        Assert.Equal(expected, counted);
    }
}
