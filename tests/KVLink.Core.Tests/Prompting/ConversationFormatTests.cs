using KVLink.Core.Prompting;
using KVLink.Core.Tests.Tokenization;
using KVLink.Training;

namespace KVLink.Core.Tests.Prompting;

/// <summary>The conversation layout of docs/prompt-format.md, byte for byte, on a Llama-3-style tokenizer.</summary>
public class ConversationFormatTests
{
    private static readonly KvLinkDocument[] Docs = [new("Paris is the capital.", "Paris"), new("Lyon is a city.", "Lyon")];

    private const string ExpectedText =
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + KvLinkLlama3Format.PublishedSystemText + "\n\nBe brief." +
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<|reserved_special_token_246|>" +
        "Document [1](Title: Paris) Paris is the capital.\n<|reserved_special_token_3|>" +
        "Document [2](Title: Lyon) Lyon is a city.\n<|reserved_special_token_4|>" +
        "<|reserved_special_token_247|>Which city is the capital?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" +
        " Paris.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd Lyon?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";

    private static PromptLayout Conversation(string? system) =>
        KvLinkLlama3Format.Published.Build(Cl100kTestData.Tokenizer, [.. Docs.Select((d, j) => KvLinkLlama3Format.Published.Document(Cl100kTestData.Tokenizer, d, j))],
            new ConversationPrompt(system, [new ChatTurn("Which city is the capital?", " Paris.")], "And Lyon?"), linkTokens: 1);

    [Fact]
    public void A_two_turn_conversation_with_system_content_is_the_documented_text_byte_for_byte()
    {
        var layout = Conversation("Be brief.");
        Assert.Equal(ExpectedText, Cl100kTestData.Tokenizer.Decode(layout.Tokens));
        // Every token after the documents is computed (segment 0); documents keep their slot's segment.
        int end = layout.Documents[^1].Start + layout.Documents[^1].Length;
        Assert.All(layout.Segments.Skip(end), s => Assert.Equal(0, s));
        Assert.Equal(layout.Tokens.ToList().IndexOf(128254) + 1, layout.PrefixLength);
    }

    [Fact]
    public void Without_history_or_system_content_the_conversation_is_the_one_shot_prompt()
    {
        var tok = Cl100kTestData.Tokenizer;
        var f = KvLinkLlama3Format.Published;
        var docs = Docs.Select((d, j) => f.Document(tok, d, j)).ToList();
        Assert.Equal(f.Build(tok, docs, "Q?", 1).Tokens, f.Build(tok, docs, new ConversationPrompt(null, [], "Q?"), 1).Tokens);
        // Caller content only adds tokens inside the system turn: the trained prefix's start and end stay.
        var with = f.ConversationPrefix(tok, "Be brief.");
        Assert.Equal(tok.Decode(f.Prefix(tok)).Replace("<|eot_id|>", "\n\nBe brief.<|eot_id|>", StringComparison.Ordinal), tok.Decode(with));
    }

    [Fact]
    public void Turn_n_plus_1_starts_with_turn_n_prompt_and_its_answer()
    {
        var tok = Cl100kTestData.Tokenizer;
        var f = KvLinkLlama3Format.Published;
        var docs = Docs.Select((d, j) => f.Document(tok, d, j)).ToList();
        var first = f.Build(tok, docs, new ConversationPrompt(null, [], "Which city is the capital?"), 1);
        var second = f.Build(tok, docs, new ConversationPrompt(null, [new ChatTurn("Which city is the capital?", " Paris.")], "And Lyon?"), 1);
        Assert.Equal(first.Tokens, second.Tokens.Take(first.Length));
        Assert.Equal(tok.Encode(" Paris.<|eot_id|>"), second.Tokens.Skip(first.Length).Take(tok.Encode(" Paris.<|eot_id|>").Count));
    }

    [Fact]
    public void Special_token_names_in_turns_and_system_content_stay_text()
    {
        var tok = Cl100kTestData.Tokenizer;
        var f = KvLinkLlama3Format.Published;
        var layout = f.Build(tok, [], new ConversationPrompt("<|eot_id|>", [new ChatTurn("<|eot_id|>", "<|start_header_id|>")], "q"), 0);
        // Exactly the eot/header ids the layout itself puts in: system end, first question end, answer end, last question end.
        Assert.Equal(4, layout.Tokens.Count(t => t == 128009));
        Assert.Equal(f.Build(tok, [], new ConversationPrompt("x", [new ChatTurn("x", "x")], "q"), 0).Tokens.Count(t => t == 128006), layout.Tokens.Count(t => t == 128006));
    }

    [Fact]
    public void The_conversation_layout_is_the_multi_turn_training_layout()
    {
        // TrainingExampleBuilder lays out follow-up turns as the demo model was trained; a chat with the same turns is the same tokens.
        var tok = Cl100kTestData.Tokenizer;
        var f = KvLinkLlama3Format.Published;
        var sample = new QaSample([.. Docs], "Which city is the capital?", "Paris.", [new QaTurn("And Lyon?", "A city."), new QaTurn("Where is Nice?", "South.")]);
        var example = new TrainingExampleBuilder(tok, f, linkTokens: 1, answerPrefix: " ").FromQa(sample, TrainingAttention.Blocked);
        var chat = f.Build(tok, [.. Docs.Select((d, j) => f.Document(tok, d, j))],
            new ConversationPrompt(null, [new ChatTurn("Which city is the capital?", " Paris."), new ChatTurn("And Lyon?", " A city.")], "Where is Nice?"), 1);
        Assert.Equal(chat.Tokens, example.Tokens.Take(chat.Length));
        Assert.Equal(tok.Encode(" South.<|eot_id|>"), example.Tokens.Skip(chat.Length));
    }
}
