using System.ClientModel;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;

namespace KVLink.AspNetCore.Tests;

/// <summary>
/// Every way a request can be wrong, over HTTP: a 4xx (never a 500, never an empty body) whose body is OpenAI's
/// <c>{"error":{"message","type","param","code"}}</c> naming the request field, the same before a stream would start,
/// and after a stream has started an error event followed by a clean end.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ErrorTests(KvLinkServer server)
{
    private const string Valid = """{"messages":[{"role":"user","content":"Hello"}],"max_tokens":2}""";

    /// <summary>A valid request with one field set to raw JSON: the mistyped fields of issue 28 and every unsupported field.</summary>
    public static TheoryData<string, string, string> WrongFields() => new()
    {
        // field, raw JSON value, the param the error must name
        { "max_tokens", "1e10", "max_tokens" }, { "max_tokens", "1.5", "max_tokens" }, { "max_tokens", "\"10\"", "max_tokens" }, { "max_tokens", "0", "max_tokens" },
        { "max_completion_tokens", "-1", "max_completion_tokens" },
        { "n", "\"5\"", "n" }, { "n", "2", "n" },
        { "messages", "[1]", "messages" }, { "messages", "[null]", "messages" }, { "messages", "[]", "messages" }, { "messages", "\"hi\"", "messages" },
        { "messages", """[{"role":"tool","content":"x"}]""", "messages" }, { "messages", """[{"role":5,"content":"x"}]""", "messages" },
        { "messages", """[{"role":"user","content":5}]""", "messages" }, { "messages", """[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]""", "messages" },
        { "messages", """[{"role":"assistant","content":"x","tool_calls":[]}]""", "messages" },
        { "stop", "[1]", "stop" }, { "stop", "5", "stop" }, { "stop", "[\"\"]", "stop" }, { "stop", """["a","b","c","d","e"]""", "stop" },
        { "temperature", "\"hot\"", "temperature" }, { "temperature", "3", "temperature" },
        { "top_p", "0", "top_p" }, { "top_p", "\"x\"", "top_p" },
        { "documents", "[1]", "documents" }, { "documents", "[null]", "documents" }, { "documents", "\"doc\"", "documents" }, { "documents", "[\"\"]", "documents" },
        { "stream", "\"yes\"", "stream" }, { "logprobs", "\"true\"", "logprobs" },
        { "top_logprobs", "3", "top_logprobs" }, { "top_logprobs", "1.5", "top_logprobs" },
        { "seed", "\"x\"", "seed" }, { "seed", "1e30", "seed" }, { "seed", "1.5", "seed" },
        { "frequency_penalty", "\"x\"", "frequency_penalty" }, { "frequency_penalty", "0.5", "frequency_penalty" }, { "presence_penalty", "1", "presence_penalty" },
        { "response_format", "\"json\"", "response_format" }, { "response_format", """{"type":"json_object"}""", "response_format" },
        { "stream_options", "true", "stream_options" }, { "stream_options", """{"include_usage":true}""", "stream_options" },
        { "conversation_id", "5", "conversation_id" }, { "model", "5", "model" }, { "user", "5", "user" },
        // Fields that would change the answer and that this server does not implement.
        { "logit_bias", """{"50256":-100}""", "logit_bias" }, { "tools", """[{"type":"function","function":{"name":"f"}}]""", "tools" },
        { "tool_choice", "\"auto\"", "tool_choice" }, { "functions", """[{"name":"f"}]""", "functions" }, { "function_call", "\"auto\"", "function_call" },
        { "parallel_tool_calls", "true", "parallel_tool_calls" }, { "audio", "{}", "audio" }, { "modalities", "[\"text\"]", "modalities" },
        { "prediction", "{}", "prediction" }, { "reasoning_effort", "\"low\"", "reasoning_effort" }, { "web_search_options", "{}", "web_search_options" },
        { "top_k", "5", "top_k" }, { "best_of", "2", "best_of" },
    };

    [Theory]
    [MemberData(nameof(WrongFields))]
    public async Task A_wrong_or_unsupported_field_is_a_400_naming_it(string field, string value, string param)
    {
        foreach (bool stream in new[] { false, true })
        {
            var body = JsonNode.Parse(Valid)!.AsObject();
            if (stream && field is "stream" or "stream_options") continue; // with stream: true, stream_options is valid
            if (stream) body["stream"] = true;
            body[field] = JsonNode.Parse(value);
            var error = await ErrorOf(await Post(body.ToJsonString()), 400);
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("null")]
    [InlineData("5")]
    public async Task A_body_that_is_not_a_JSON_object_is_a_400(string body)
    {
        var error = await ErrorOf(await Post(body), 400);
        Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Unknown_documents_are_a_404_before_any_stream_starts(bool stream)
    {
        var error = await ErrorOf(await Post(JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = "Hi" } }, documents = new[] { "no-such-document" }, stream })), 404);
        Assert.Equal("documents", error.GetProperty("param").GetString());
        Assert.Equal("document_not_found", error.GetProperty("code").GetString());
        Assert.Contains("'no-such-document'", error.GetProperty("message").GetString());
        Assert.DoesNotContain("PrecomputeAsync", error.GetProperty("message").GetString()); // the engine's API means nothing to an HTTP client
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task An_assistant_first_conversation_and_an_over_long_prompt_are_400s_before_any_stream_starts(bool stream)
    {
        var assistantFirst = await ErrorOf(await Post(JsonSerializer.Serialize(new { messages = new[] { new { role = "assistant", content = "Hi" }, new { role = "user", content = "Hi" } }, stream })), 400);
        Assert.Equal("messages", assistantFirst.GetProperty("param").GetString());
        string longText = string.Join(' ', Enumerable.Repeat("word", 5000)); // beyond the demo model's 2,048 positions
        var tooLong = await ErrorOf(await Post(JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = longText } }, stream })), 400);
        Assert.Equal("messages", tooLong.GetProperty("param").GetString());
        Assert.Equal("context_length_exceeded", tooLong.GetProperty("code").GetString());
        Assert.DoesNotContain("(Parameter", tooLong.GetProperty("message").GetString()); // the engine's parameter name is not the client's
    }

    [Theory]
    [InlineData("", null)]
    [InlineData("[1]", null)]
    [InlineData("{}", "text")]
    [InlineData("""{"text":5}""", "text")]
    [InlineData("""{"text":"   "}""", "text")]
    [InlineData("""{"text":"A document.","title":["x"]}""", "title")]
    [InlineData("""{"text":"A document.","id":""}""", "id")]
    public async Task A_wrong_document_is_a_400_naming_the_field(string body, string? param)
    {
        var error = await ErrorOf(await server.Http.PostAsync("/documents", new StringContent(body, Encoding.UTF8, "application/json")), 400);
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task An_unknown_model_is_a_404_for_requests_and_retrieval()
    {
        var error = await ErrorOf(await Post("""{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"""), 404);
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Equal("model", error.GetProperty("param").GetString());
        var retrieve = await ErrorOf(await server.Http.GetAsync("/v1/models/gpt-4o"), 404);
        Assert.Equal("model_not_found", retrieve.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_failure_after_the_stream_started_is_an_error_event_then_a_clean_end()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/failing/v1/chat/completions")
        { Content = new StringContent("""{"messages":[{"role":"user","content":"Where was Neloun born?"}],"stream":true,"max_tokens":8}""", Encoding.UTF8, "application/json") };
        using var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        // ReadAsStringAsync throws on a dropped connection; a clean end reads to the end.
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e, StringComparison.Ordinal));
        var last = JsonDocument.Parse(events[^1]["data: ".Length..]).RootElement;
        var error = last.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.True(events.Length >= 3, string.Join("\n", events)); // the role chunk, the first text, the error

        // The official .NET client ends such a stream without an exception (it skips an event without choices; the npm
        // SDK throws it, ClientSdkTests): what matters here is that it ends cleanly after the text it got.
        var chat = new ChatClient("kvlink-demo", new ApiKeyCredential("k"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/failing/v1") });
        var text = new StringBuilder();
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Where was Neloun born?")], new ChatCompletionOptions { MaxOutputTokenCount = 8 }))
            foreach (var part in update.ContentUpdate) text.Append(part.Text);
        Assert.NotEmpty(text.ToString());
    }

    [Theory]
    [MemberData(nameof(WrongFields))]
    public async Task The_official_client_reads_each_error_with_its_status_and_message(string field, string value, string param)
    {
        if (field is not ("max_tokens" or "logit_bias" or "seed" or "tools")) return; // a sample through the SDK; every case is checked on the wire above
        var options = new ChatCompletionOptions();
#pragma warning disable SCME0001 // JsonPatch is how the OpenAI client sends a field as raw JSON
        options.Patch.Set(Encoding.UTF8.GetBytes("$." + field), BinaryData.FromString(value));
#pragma warning restore SCME0001
        var chat = new ChatClient("kvlink-demo", new ApiKeyCredential("k"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1"), RetryPolicy = new System.ClientModel.Primitives.ClientRetryPolicy(0) });
        var error = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage("Hi")], options));
        Assert.Equal(400, error.Status);
        Assert.Contains(param, error.Message);
    }

    private Task<HttpResponseMessage> Post(string body) =>
        server.Http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));

    /// <summary>Checks the status and OpenAI's error shape; returns the error object.</summary>
    private static async Task<JsonElement> ErrorOf(HttpResponseMessage response, int status)
    {
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(status == (int)response.StatusCode, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.DoesNotContain("\\u0027", text); // messages quote fields as 'max_tokens', written as such
        var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
        Assert.True(error.TryGetProperty("param", out _) && error.TryGetProperty("code", out _), text);
        return error;
    }
}
