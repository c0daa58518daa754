using KVLink.TestSupport;
using System.Text;
using System.Text.Json;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;
using KVLink.Core.Hosting;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;

namespace KVLink.Core.Tests.Hosting;

public sealed class ChatClientTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "Answer in one word."),
        new(ChatRole.User, "an earlier question"),
        new(ChatRole.Assistant, "an earlier answer"),
        new(ChatRole.User, "Which document mentions v3?"),
    ];

    [Fact]
    public async Task Chat_client_answers_from_documents_in_chat_options_like_the_engine()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure);
        await using var sp = services.BuildServiceProvider();
        var engine = sp.GetRequiredService<KvLinkEngine>();
        var chat = sp.GetRequiredService<IChatClient>();
        string[] ids = [await engine.PrecomputeAsync(CheckpointFixture.Doc(1)), await engine.PrecomputeAsync(CheckpointFixture.Doc(2))];
        // Precompute stores one cache per document (the default SlotPolicy.Shared serves it in any slot).
        var first = await chat.GetResponseAsync(Conversation, new ChatOptions().WithDocuments(ids));
        Assert.True(first.Usage!.CachedInputTokenCount < first.Usage.InputTokenCount);

        var response = await chat.GetResponseAsync(Conversation, new ChatOptions().WithDocuments(ids));
        var direct = await engine.ChatAsync(Conversation, ids);

        Assert.Equal(direct.Text, response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.True(direct.Usage.CachedTokens > 0);
        Assert.Equal(direct.Usage.CachedTokens, response.Usage!.CachedInputTokenCount);
        Assert.Equal(direct.Usage.PromptTokens, response.Usage.InputTokenCount);
        Assert.Equal(direct.Usage.GeneratedTokens, response.Usage.OutputTokenCount);
        var raw = Assert.IsType<GenerationResult>(response.RawRepresentation);
        Assert.Equal(raw.Usage.CachedTokens, response.Usage.CachedInputTokenCount);
    }

    [Fact]
    public async Task Streaming_concatenation_equals_the_non_streaming_text_and_reports_usage()
    {
        await using var engine = await fixture.LoadEngineAsync();
        using var chat = engine.AsIChatClient();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(7, words: 30));
        // Each call its own conversation id, so that no call continues another's kept cache and usage compares like for like.
        ChatOptions Options() => new ChatOptions { MaxOutputTokens = 20, ConversationId = Guid.NewGuid().ToString() }.WithDocuments(id);

        var whole = await chat.GetResponseAsync(Conversation, Options());
        var text = new StringBuilder();
        UsageDetails? usage = null;
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (var u in chat.GetStreamingResponseAsync(Conversation, Options()))
        {
            updates++;
            text.Append(u.Text);
            usage ??= u.Contents.OfType<UsageContent>().SingleOrDefault()?.Details;
            finish ??= u.FinishReason;
            Assert.Equal(engine.ModelId, u.ModelId);
        }

        Assert.True(updates > 1);
        Assert.Equal(whole.Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.NotNull(usage);
        Assert.Equal(whole.Usage!.CachedInputTokenCount, usage!.CachedInputTokenCount);
        Assert.Equal(whole.Usage.OutputTokenCount, usage.OutputTokenCount);

        // The ChatResponse assembled from updates (M.E.AI's own helper) carries the same text and usage.
        var assembled = (await chat.GetStreamingResponseAsync(Conversation, Options()).ToArrayAsync()).ToChatResponse();
        Assert.Equal(whole.Text, assembled.Text);
        Assert.Equal(whole.Usage.CachedInputTokenCount, assembled.Usage!.CachedInputTokenCount);
    }

    [Fact]
    public async Task Options_map_to_generation_settings()
    {
        await using var engine = await fixture.LoadEngineAsync();
        var chat = engine.AsIChatClient();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(3));

        var shortAnswer = await chat.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 2 }.WithDocuments(id).WithContextMode(ContextMode.FullPrefill));
        var raw = Assert.IsType<GenerationResult>(shortAnswer.RawRepresentation);
        Assert.True(raw.TokenIds.Count <= 2);
        if (raw.FinishReason == FinishReason.Length) Assert.Equal(ChatFinishReason.Length, shortAnswer.FinishReason);
        Assert.Equal(0, shortAnswer.Usage!.CachedInputTokenCount); // full prefill reuses nothing

        var noDocs = await chat.GetResponseAsync("hello", new ChatOptions { MaxOutputTokens = 3 });
        int prefix = (await engine.BuildLayoutAsync("hello", [], 0)).PrefixLength;
        Assert.True(prefix > 0);
        Assert.Equal(prefix, noDocs.Usage!.CachedInputTokenCount); // only the prompt prefix, cached once per engine
    }

    [Fact]
    public async Task Every_chat_option_maps_to_its_own_generation_setting()
    {
        // Engine defaults and request values are all distinct, so a swapped or dropped field shows as a wrong number.
        var o = new KvLinkOptions();
        fixture.Configure(o);
        o.Generation = new GenerationOptions { MaxNewTokens = 9, Temperature = 0.25f, TopP = 0.75f, TopK = 13, Seed = 17, StopTokenIds = [3, 4] };
        await using var engine = await KvLinkEngine.LoadAsync(fixture.Folder, o);
        var chat = new KvLinkChatClient(engine);

        var request = new ChatOptions { MaxOutputTokens = 5, Temperature = 0.5f, TopP = 0.9f, TopK = 40, Seed = 123_456_789_012L }
            .WithDocuments("doc-a", "doc-b").WithContextMode(ContextMode.FullPrefill).WithLinkTokens(2);
        var (conversation, documents, mapped) = chat.Translate(Conversation, request);
        Assert.Equal("Answer in one word.", conversation.SystemText);
        Assert.Equal([new ChatTurn("an earlier question", "an earlier answer")], conversation.History);
        Assert.Equal("Which document mentions v3?", conversation.Question);
        Assert.Equal(["doc-a", "doc-b"], documents);
        var g = Assert.IsType<KvLinkGenerationOptions>(mapped);
        Assert.Equal(5, g.MaxNewTokens);
        Assert.Equal(0.5f, g.Temperature);
        Assert.Equal(0.9f, g.TopP);
        Assert.Equal(40, g.TopK);
        Assert.Equal(unchecked((int)123_456_789_012L), g.Seed); // the low 32 bits of a long seed
        Assert.Equal([3, 4], g.StopTokenIds!); // the engine's stop tokens stay; ChatOptions.StopSequences are text-level, below
        Assert.Equal(ContextMode.FullPrefill, g.Mode);
        Assert.Equal(2, g.LinkTokens);

        // Unset options fall back to the engine's own settings, field by field.
        var (_, none, fallback) = chat.Translate(Conversation, new ChatOptions());
        Assert.Empty(none);
        Assert.Equal((9, 0.25f, 0.75f, 13, (int?)17), (fallback.MaxNewTokens, fallback.Temperature, fallback.TopP, fallback.TopK, fallback.Seed));
        Assert.Equal([3, 4], fallback.StopTokenIds!);
        Assert.Null(fallback.StopSequences);

        var more = new ChatOptions { StopSequences = ["\n\n"], ConversationId = "c-1", Instructions = "Be brief." };
        var (withInstructions, _, mappedMore) = chat.Translate(Conversation, more);
        Assert.Equal(["\n\n"], mappedMore.StopSequences!);
        Assert.Equal("c-1", Assert.IsType<KvLinkGenerationOptions>(mappedMore).ConversationId);
        // Instructions follow the system messages in the system content, before the turns.
        Assert.Equal("Answer in one word.\n\nBe brief.", withInstructions.SystemText);
        Assert.Single(withInstructions.History);
    }

    [Fact]
    public async Task Bad_requests_fail_clearly()
    {
        await using var engine = await fixture.LoadEngineAsync();
        var chat = engine.AsIChatClient();
        await Assert.ThrowsAsync<ArgumentException>(() => chat.GetResponseAsync([new ChatMessage(ChatRole.System, "no question")]));
        await Assert.ThrowsAsync<KeyNotFoundException>(() => chat.GetResponseAsync("q", new ChatOptions().WithDocuments("doc-unknown")));
        await Assert.ThrowsAsync<ArgumentException>(() => chat.GetResponseAsync([new ChatMessage(ChatRole.Assistant, "hi"), new ChatMessage(ChatRole.User, "q")]));
        await Assert.ThrowsAsync<NotSupportedException>(() => chat.GetResponseAsync([new ChatMessage(ChatRole.Tool, "result"), new ChatMessage(ChatRole.User, "q")]));
        await Assert.ThrowsAsync<NotSupportedException>(() => chat.GetResponseAsync([new ChatMessage(ChatRole.User, [new TextContent("look"), new DataContent(new byte[] { 1 }, "image/png")])]));
        var model = await Assert.ThrowsAsync<ArgumentException>(() => chat.GetResponseAsync("q", new ChatOptions { ModelId = "gpt-4o" }));
        Assert.Contains(engine.ModelId, model.Message);
        Assert.Contains("gpt-4o", model.Message);
        await Assert.ThrowsAsync<NotSupportedException>(() => chat.GetResponseAsync("q", new ChatOptions { ResponseFormat = ChatResponseFormat.Json }));
        await Assert.ThrowsAsync<NotSupportedException>(() => chat.GetResponseAsync("q", new ChatOptions { FrequencyPenalty = 0.5f }));
        await Assert.ThrowsAsync<NotSupportedException>(() => chat.GetResponseAsync("q", new ChatOptions { PresencePenalty = 0.5f }));
        await Assert.ThrowsAsync<NotSupportedException>(() => chat.GetResponseAsync("q", new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one")] }));
        // The model's own name and the plain-text format are accepted.
        Assert.NotNull(await chat.GetResponseAsync("q", new ChatOptions { ModelId = engine.ModelId, ResponseFormat = ChatResponseFormat.Text, MaxOutputTokens = 1 }));
        Assert.Null(chat.GetService<KvLinkEngine>("some-key"));
        Assert.Same(chat, chat.GetService<IChatClient>());
    }

    [Fact]
    public void Document_ids_round_trip_through_chat_options_in_every_form()
    {
        Assert.Empty(((ChatOptions?)null).GetDocuments());
        Assert.Empty(new ChatOptions().GetDocuments());
        Assert.Equal(["a", "b"], new ChatOptions().WithDocuments("a", "b").GetDocuments());
        Assert.Equal(["a", "b"], new ChatOptions().WithDocuments(new List<string> { "a", "b" }).GetDocuments());

        // As it arrives after JSON (de)serialisation, e.g. from a web request.
        var json = new ChatOptions { AdditionalProperties = new() { [KvLinkChatExtensions.DocumentsKey] = JsonDocument.Parse("[\"x\",\"y\"]").RootElement } };
        Assert.Equal(["x", "y"], json.GetDocuments());
        json.AdditionalProperties[KvLinkChatExtensions.DocumentsKey] = 42;
        Assert.Throws<ArgumentException>(() => json.GetDocuments());
        Assert.Throws<ArgumentException>(() => new ChatOptions().WithDocuments("a", " "));

        var o = new ChatOptions().WithLinkTokens(0).WithContextMode(ContextMode.FullPrefill);
        Assert.Equal((0, ContextMode.FullPrefill), (o.GetLinkTokens(), o.GetContextMode()));
    }

    [Fact]
    public async Task The_whole_history_and_the_system_messages_reach_the_model()
    {
        await using var engine = await fixture.LoadEngineAsync();
        using var chat = engine.AsIChatClient();
        var response = await chat.GetResponseAsync(Conversation, new ChatOptions { Instructions = "Cite the document." });
        var raw = Assert.IsType<GenerationResult>(response.RawRepresentation);
        string prompt = engine.Tokenizer.Decode(raw.PromptTokenIds);
        Assert.Contains("Answer from the documents.\n\nAnswer in one word.\n\nCite the document.<|eot_id|>", prompt);
        Assert.Contains("an earlier question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nan earlier answer<|eot_id|>", prompt);
        Assert.EndsWith("Which document mentions v3?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", prompt);
        Assert.Equal(raw.Usage.PromptTokens, raw.PromptTokenIds.Count);
        // The model's name, not the DI key: the checkpoint folder's name (the synthetic checkpoint has no _name_or_path).
        Assert.Equal(Path.GetFileName(fixture.Folder), response.ModelId);
        Assert.Equal(raw.ConversationId, response.AdditionalProperties![KvLinkChatExtensions.ConversationKey]);
    }

    [Fact]
    public async Task Stop_sequences_end_the_answer_with_finish_reason_stop_streamed_or_not()
    {
        await using var engine = await fixture.LoadEngineAsync();
        using var chat = engine.AsIChatClient();
        var free = await chat.GetResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 12, StopSequences = ["\u0000never"] });
        string text = free.Text;
        Assert.True(text.Length >= 4, $"the random model's answer '{text}' is too short to cut");
        string stop = text.Substring(text.Length / 2, 2); // a stop sequence taken from the middle of what it says
        var options = new ChatOptions { MaxOutputTokens = 12, StopSequences = [stop] };
        var cut = await chat.GetResponseAsync(Conversation, options);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);
        var streamed = new StringBuilder();
        await foreach (var u in chat.GetStreamingResponseAsync(Conversation, options)) streamed.Append(u.Text);
        Assert.Equal(cut.Text, streamed.ToString());
    }

    [Fact]
    public async Task Logprobs_come_through_the_raw_representation()
    {
        await using var engine = await fixture.LoadEngineAsync();
        using var chat = engine.AsIChatClient();
        var options = new ChatOptions { RawRepresentationFactory = _ => new KvLinkGenerationOptions { MaxNewTokens = 5, Logprobs = true, TopLogprobs = 3 } };
        var raw = Assert.IsType<GenerationResult>((await chat.GetResponseAsync(Conversation, options)).RawRepresentation);
        Assert.Equal(raw.TokenIds, raw.Logprobs!.Select(l => l.TokenId));
        // Greedy: the chosen token is the most likely one.
        Assert.All(raw.Logprobs!, l => { Assert.Equal(3, l.TopAlternatives.Count); Assert.Equal(l.TopAlternatives[0].TokenId, l.TokenId); Assert.True(l.Logprob <= 0); });
    }
}
