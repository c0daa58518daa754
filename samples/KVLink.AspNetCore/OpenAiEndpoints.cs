using System.Text.Json;
using System.Text.Json.Nodes;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using Microsoft.Extensions.AI;

namespace KVLink.AspNetCore;

/// <summary>
/// An OpenAI-compatible surface: <c>POST /v1/chat/completions</c> (streaming as server-sent events, or not) and
/// <c>GET /v1/models</c>. The whole message list is the conversation; the documents are an extension field
/// <c>"documents": ["id", ...]</c> (ids from <c>POST /documents</c>). Supported fields: <c>model</c> (must be the served
/// model), <c>messages</c> (system/developer, user, assistant; text), <c>stream</c>, <c>stream_options.include_usage</c>,
/// <c>max_tokens</c> / <c>max_completion_tokens</c>, <c>temperature</c>, <c>top_p</c>, <c>seed</c>, <c>stop</c>,
/// <c>logprobs</c>, <c>top_logprobs</c>, <c>n</c> = 1, and the extensions <c>documents</c> and <c>conversation_id</c>.
/// Anything else that would change the answer (tools, response_format other than text, penalties) is a 400.
/// </summary>
internal static class OpenAiEndpoints
{
    public static void Map(WebApplication app)
    {
        app.MapGet("/v1/models", (KvLinkEngine engine) => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = engine.ModelId, @object = "model", created = 0, owned_by = "kvlink" } },
        }));

        app.MapPost("/v1/chat/completions", async (HttpContext http, KvLinkEngine engine, CancellationToken ct) =>
        {
            JsonObject body;
            try { body = JsonNode.Parse(await new StreamReader(http.Request.Body).ReadToEndAsync(ct))?.AsObject() ?? throw new JsonException("empty body"); }
            catch (Exception e) when (e is JsonException or InvalidOperationException) { await Error(http, 400, $"The body is not a JSON object: {e.Message}", null); return; }

            Request request;
            try { request = Read(body, engine); }
            catch (RequestException e) { await Error(http, e.Status, e.Message, e.Param); return; }

            string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            if (!request.Stream)
            {
                var result = await engine.ChatAsync(request.Messages, request.Documents, request.Options, ct);
                await http.Response.WriteAsJsonAsync(new JsonObject
                {
                    ["id"] = id, ["object"] = "chat.completion", ["created"] = created, ["model"] = engine.ModelId,
                    ["choices"] = new JsonArray(new JsonObject
                    {
                        ["index"] = 0,
                        ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = result.Text },
                        ["logprobs"] = Logprobs(result),
                        ["finish_reason"] = Finish(result.FinishReason),
                    }),
                    ["usage"] = Usage(result),
                    ["kvlink"] = Extension(result),
                }, ct);
                return;
            }

            http.Response.ContentType = "text/event-stream";
            http.Response.Headers.CacheControl = "no-cache";
            JsonObject Chunk(JsonObject delta, string? finish, JsonNode? logprobs = null) => new()
            {
                ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = engine.ModelId,
                ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finish }),
            };
            await Send(http, Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null), ct);
            await foreach (var update in engine.ChatStreamingAsync(request.Messages, request.Documents, request.Options, ct))
            {
                if (update.Result is { } result)
                {
                    // Deltas follow text, not tokens, so the logprobs of every token come with the finishing chunk.
                    await Send(http, Chunk(new JsonObject(), Finish(result.FinishReason), Logprobs(result)), ct);
                    if (request.IncludeUsage)
                        await Send(http, new JsonObject
                        {
                            ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = engine.ModelId,
                            ["choices"] = new JsonArray(), ["usage"] = Usage(result), ["kvlink"] = Extension(result),
                        }, ct);
                }
                else if (update.Delta.Length > 0) await Send(http, Chunk(new JsonObject { ["content"] = update.Delta }, null), ct);
            }
            await http.Response.WriteAsync("data: [DONE]\n\n", ct);
            await http.Response.Body.FlushAsync(ct);
        });
    }

    private sealed record Request(List<ChatMessage> Messages, IReadOnlyList<string> Documents, KvLinkGenerationOptions Options, bool Stream, bool IncludeUsage);

    private sealed class RequestException(int status, string message, string? param) : Exception(message)
    {
        public int Status => status;
        public string? Param => param;
    }

    private static Request Read(JsonObject b, KvLinkEngine engine)
    {
        static RequestException Bad(string message, string param) => new(400, message, param);
        string? model = Str(b, "model");
        if (model is { Length: > 0 } && model != engine.ModelId)
            throw new RequestException(404, $"The model '{model}' does not exist here; this server serves '{engine.ModelId}'.", "model");
        foreach (string unsupported in new[] { "tools", "functions", "tool_choice", "audio", "modalities", "prediction" })
            if (b[unsupported] is not null) throw Bad($"'{unsupported}' is not supported by this server.", unsupported);
        if (b["response_format"]?["type"]?.GetValue<string>() is { } format && format != "text") throw Bad("Only response_format 'text' is supported.", "response_format");
        foreach (string penalty in new[] { "frequency_penalty", "presence_penalty" })
            if (b[penalty] is { } p && p.GetValue<double>() != 0) throw Bad($"'{penalty}' is not supported (use 0).", penalty);
        if (b["n"] is { } n && n.GetValue<int>() != 1) throw Bad("Only n = 1 is supported.", "n");

        var messages = new List<ChatMessage>();
        if (b["messages"] is not JsonArray list || list.Count == 0) throw Bad("'messages' must be a non-empty array.", "messages");
        foreach (var m in list)
        {
            string role = Str(m!.AsObject(), "role") ?? throw Bad("Every message needs a role.", "messages");
            var chatRole = role switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                _ => throw Bad($"Messages with role '{role}' are not supported (system, developer, user, assistant).", "messages"),
            };
            messages.Add(new ChatMessage(chatRole, Content(m["content"])));
        }

        string[] stop = b["stop"] switch
        {
            null => [],
            JsonValue v => [v.GetValue<string>()],
            JsonArray a => [.. a.Select(x => x!.GetValue<string>())],
            _ => throw Bad("'stop' must be a string or an array of strings.", "stop"),
        };
        bool logprobs = b["logprobs"]?.GetValue<bool>() ?? false;
        int top = b["top_logprobs"]?.GetValue<int>() ?? 0;
        if (top > 0 && !logprobs) throw Bad("'top_logprobs' needs 'logprobs': true.", "top_logprobs");
        var defaults = engine.Options.Generation;
        var options = new KvLinkGenerationOptions
        {
            MaxNewTokens = (b["max_completion_tokens"] ?? b["max_tokens"])?.GetValue<int>() ?? defaults.MaxNewTokens,
            Temperature = b["temperature"]?.GetValue<float>() ?? defaults.Temperature,
            TopP = b["top_p"]?.GetValue<float>() ?? defaults.TopP,
            Seed = b["seed"] is { } seed ? unchecked((int)seed.GetValue<long>()) : defaults.Seed,
            StopSequences = stop.Length > 0 ? stop : null,
            Logprobs = logprobs,
            TopLogprobs = top,
            ConversationId = Str(b, "conversation_id"),
        };
        try { options.Validate(); }
        catch (ArgumentException e) { throw Bad(e.Message, e.ParamName ?? "body"); }
        string[] documents = b["documents"] is JsonArray docs ? [.. docs.Select(d => d!.GetValue<string>())] : [];
        bool stream = b["stream"]?.GetValue<bool>() ?? false;
        bool includeUsage = b["stream_options"]?["include_usage"]?.GetValue<bool>() ?? false;
        return new Request(messages, documents, options, stream, includeUsage);
    }

    // Content is a string or an array of parts; only text parts are accepted.
    private static string Content(JsonNode? content) => content switch
    {
        null => "",
        JsonValue v => v.GetValue<string>(),
        JsonArray parts => string.Concat(parts.Select(p => Str(p!.AsObject(), "type") == "text"
            ? Str(p.AsObject(), "text") ?? ""
            : throw new RequestException(400, $"Content parts of type '{Str(p.AsObject(), "type")}' are not supported (text only).", "messages"))),
        _ => throw new RequestException(400, "Message content must be a string or an array of text parts.", "messages"),
    };

    private static string? Str(JsonObject o, string name) => o[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    private static string Finish(FinishReason reason) => reason == FinishReason.Length ? "length" : "stop";

    private static JsonObject Usage(GenerationResult r) => new()
    {
        ["prompt_tokens"] = r.Usage.PromptTokens,
        ["completion_tokens"] = r.Usage.GeneratedTokens,
        ["total_tokens"] = r.Usage.PromptTokens + r.Usage.GeneratedTokens,
        ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = r.Usage.CachedTokens },
    };

    // KVLink's own figures, beside OpenAI's fields: computed tokens, the conversation id and time to first token.
    private static JsonObject Extension(GenerationResult r) => new()
    {
        ["computed_tokens"] = r.Usage.ComputedTokens,
        ["conversation_id"] = r.ConversationId,
        ["ttft_ms"] = Math.Round(r.Timings.TimeToFirstToken.TotalMilliseconds, 2),
    };

    private static JsonObject? Logprobs(GenerationResult r) => r.Logprobs is not { } items ? null : new JsonObject
    {
        ["content"] = new JsonArray([.. items.Select(l => (JsonNode)new JsonObject
        {
            ["token"] = l.Token,
            ["logprob"] = l.Logprob,
            ["bytes"] = Bytes(l.Bytes),
            ["top_logprobs"] = new JsonArray([.. l.TopAlternatives.Select(a => (JsonNode)new JsonObject { ["token"] = a.Token, ["logprob"] = a.Logprob, ["bytes"] = Bytes(a.Bytes) })]),
        })]),
    };

    private static JsonArray Bytes(IReadOnlyList<byte> bytes) => new([.. bytes.Select(b => (JsonNode)(int)b)]);

    private static async Task Send(HttpContext http, JsonObject chunk, CancellationToken ct)
    {
        await http.Response.WriteAsync("data: " + chunk.ToJsonString() + "\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }

    private static async Task Error(HttpContext http, int status, string message, string? param)
    {
        http.Response.StatusCode = status;
        await http.Response.WriteAsJsonAsync(new JsonObject
        {
            ["error"] = new JsonObject { ["message"] = message, ["type"] = "invalid_request_error", ["param"] = param, ["code"] = status == 404 ? "model_not_found" : null },
        });
    }
}
