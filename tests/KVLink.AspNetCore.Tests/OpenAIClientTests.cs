using System.ClientModel;
using System.Text;
using System.Text.Json;
using KVLink.Core.Engine;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Models;
using MeaiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using MeaiChatRole = Microsoft.Extensions.AI.ChatRole;

namespace KVLink.AspNetCore.Tests;

/// <summary>
/// What should succeed, through the official OpenAI .NET client against the package's endpoints: answers equal to the
/// engine's own, streamed and not, logprobs (each streamed chunk with its tokens'), documents through an extension
/// field, a conversation reusing its first turn, the model list and retrieval.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class OpenAIClientTests(KvLinkServer server)
{
    private ChatClient Chat(string model = "kvlink-demo", string prefix = "/v1") =>
        new(model, new ApiKeyCredential(KvLinkServer.ApiKey), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, prefix) });

    private static ChatCompletionOptions Options(string[] documents, bool logprobs = false)
    {
        var o = new ChatCompletionOptions { MaxOutputTokenCount = 24, Temperature = 0, IncludeLogProbabilities = logprobs ? true : null, TopLogProbabilityCount = logprobs ? 2 : null };
#pragma warning disable SCME0001 // JsonPatch is how the OpenAI client sends extension fields
        o.Patch.Set("$.documents"u8, BinaryData.FromString(JsonSerializer.Serialize(documents)));
#pragma warning restore SCME0001
        return o;
    }

    // What the engine itself answers (greedy, 24 tokens): the HTTP path must give exactly this.
    private Task<KVLink.Core.Generation.GenerationResult> Direct(IEnumerable<(bool User, string Text)> turns, string[] ids) =>
        server.Engine.ChatAsync(turns.Select(t => new MeaiChatMessage(t.User ? MeaiChatRole.User : MeaiChatRole.Assistant, t.Text)), ids,
            new KvLinkGenerationOptions { MaxNewTokens = 24, Logprobs = true });

    [Fact]
    public async Task A_conversation_over_documents_answers_as_the_engine_does_and_reuses_its_first_turn()
    {
        string[] ids = await Corpus.PostDocumentsAsync(server.Http);
        var chat = Chat();
        string question = Corpus.Sample.Sample.Question;

        ChatCompletion first = await chat.CompleteChatAsync([new UserChatMessage(question)], Options(ids, logprobs: true));
        var direct = await Direct([(true, question)], ids);
        string answer = first.Content[0].Text;
        Assert.Equal(direct.Text, answer);
        Assert.NotEmpty(answer);
        Assert.Equal(ChatFinishReason.Stop, first.FinishReason);
        Assert.True(first.Usage.InputTokenDetails.CachedTokenCount > 0); // the prompt prefix and the stored documents
        Assert.Equal(first.Usage.OutputTokenCount, first.ContentTokenLogProbabilities.Count);
        Assert.All(first.ContentTokenLogProbabilities, l => { Assert.True(l.LogProbability <= 0); Assert.Equal(2, l.TopLogProbabilities.Count); });
        Assert.Equal(direct.Logprobs!.Select(l => l.Logprob), first.ContentTokenLogProbabilities.Select(l => l.LogProbability));

        string followUp = Corpus.Sample.Sample.FollowUps![0].Question;
        ChatCompletion second = await chat.CompleteChatAsync([new UserChatMessage(question), new AssistantChatMessage(answer), new UserChatMessage(followUp)], Options(ids));
        Assert.Equal((await Direct([(true, question), (false, answer), (true, followUp)], ids)).Text, second.Content[0].Text);
        // The first turn's tokens come from the kept conversation cache: all of the first prompt is cached except the link
        // tokens of the documents before the last (5 each), which every request recomputes.
        Assert.True(second.Usage.InputTokenDetails.CachedTokenCount >= first.Usage.InputTokenCount - 5 * (ids.Length - 1),
            $"{second.Usage.InputTokenDetails.CachedTokenCount} cached of {second.Usage.InputTokenCount}; first prompt {first.Usage.InputTokenCount}");
    }

    [Fact]
    public async Task A_stream_has_the_same_text_with_each_chunks_logprobs_and_usage_at_the_end()
    {
        string[] ids = await Corpus.PostDocumentsAsync(server.Http);
        string question = Corpus.Sample.Sample.Question;
        var direct = await Direct([(true, question)], ids);

        var text = new StringBuilder();
        var logprobs = new List<ChatTokenLogProbabilityDetails>();
        ChatTokenUsage? usage = null;
        int textChunks = 0, chunksWithTheirLogprobs = 0;
        var mismatches = new List<string>();
        var options = Options(ids, logprobs: true);
        await foreach (var update in Chat().CompleteChatStreamingAsync([new UserChatMessage(question)], options))
        {
            foreach (var part in update.ContentUpdate)
            {
                if (part.Text.Length == 0) continue; // the role chunk
                textChunks++;
                text.Append(part.Text);
                // The chunk's tokens spell its text (token texts are bytes decoded as UTF-8; these answers are ASCII).
                if (update.ContentTokenLogProbabilities.Count > 0 && string.Concat(update.ContentTokenLogProbabilities.Select(l => l.Token)) == part.Text)
                    chunksWithTheirLogprobs++;
                else mismatches.Add($"'{part.Text}' <- [{string.Join("|", update.ContentTokenLogProbabilities.Select(l => l.Token))}]");
            }
            logprobs.AddRange(update.ContentTokenLogProbabilities);
            usage = update.Usage ?? usage;
        }
        Assert.Equal(direct.Text, text.ToString());
        Assert.True(textChunks > 2, $"{textChunks} text chunks");
        Assert.True(textChunks == chunksWithTheirLogprobs, string.Join("; ", mismatches));
        Assert.Equal(direct.Logprobs!.Select(l => l.Logprob), logprobs.Select(l => l.LogProbability));
        Assert.NotNull(usage);
        Assert.Equal(direct.Usage.PromptTokens, usage!.InputTokenCount);
    }

    [Fact]
    public async Task Stop_sequences_end_the_answer_before_them()
    {
        string[] ids = await Corpus.PostDocumentsAsync(server.Http);
        string question = Corpus.Sample.Sample.Question;
        string full = (await Direct([(true, question)], ids)).Text;
        string stop = full.Substring(full.Length / 2, 2);
        var options = Options(ids);
        options.StopSequences.Add(stop);
        ChatCompletion stopped = await Chat().CompleteChatAsync([new UserChatMessage(question)], options);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], stopped.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task The_models_list_and_retrieve_name_the_served_model_with_its_checkpoints_time()
    {
        var models = new OpenAIModelClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") });
        OpenAIModelCollection list = await models.GetModelsAsync();
        var model = Assert.Single(list);
        Assert.Equal("kvlink-demo", model.Id);
        var written = File.GetLastWriteTimeUtc(Path.Combine(server.Engine.Options.ModelPath!, "config.json"));
        Assert.Equal(new DateTimeOffset(written).ToUnixTimeSeconds(), model.CreatedAt.ToUnixTimeSeconds());
        Assert.True(model.CreatedAt.Year >= 2024);
        OpenAIModel retrieved = await models.GetModelAsync("kvlink-demo");
        Assert.Equal(model.CreatedAt, retrieved.CreatedAt);
        var missing = await Assert.ThrowsAsync<ClientResultException>(() => models.GetModelAsync("gpt-4o"));
        Assert.Equal(404, missing.Status);
        Assert.Contains("gpt-4o", missing.Message);
    }

    [Fact]
    public async Task The_endpoints_compose_with_authorization_rate_limiting_and_size_limits()
    {
        var message = new UserChatMessage("Hello");
        var few = new ChatCompletionOptions { MaxOutputTokenCount = 2 };
        var noKey = new ChatClient("kvlink-demo", new ApiKeyCredential("wrong"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/secured/v1") });
        var denied = await Assert.ThrowsAsync<ClientResultException>(() => noKey.CompleteChatAsync([message], few));
        Assert.Equal(401, denied.Status);
        Assert.Contains("API key", denied.Message);
        Assert.NotEmpty((await Chat(prefix: "/secured/v1").CompleteChatAsync([message], few)).Value.Content[0].Text);

        // One request a minute: the second is a 429 in OpenAI's shape (the client retries 429s; with none left it throws).
        var limited = new ChatClient("kvlink-demo", new ApiKeyCredential("k"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/limited/v1"), RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(0) });
        await limited.CompleteChatAsync([message], few);
        var tooMany = await Assert.ThrowsAsync<ClientResultException>(() => limited.CompleteChatAsync([message], few));
        Assert.Equal(429, tooMany.Status);

        // A body over the route's 1 KiB limit: 413, OpenAI-shaped.
        var big = await Assert.ThrowsAsync<ClientResultException>(() => Chat(prefix: "/small/v1").CompleteChatAsync([new UserChatMessage(new string('a', 4096))], few));
        Assert.Equal(413, big.Status);
        Assert.Contains("could not be read", big.Message);
    }
}
