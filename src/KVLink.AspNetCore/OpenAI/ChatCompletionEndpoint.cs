using System.Text.Json;
using System.Text.Json.Nodes;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using Microsoft.AspNetCore.Http;

namespace KVLink.AspNetCore;

/// <summary>
/// <c>POST /v1/chat/completions</c>. Everything that can be refused is refused before the response starts: the body is
/// read strictly (<see cref="ChatCompletionRequest"/>), and a stream's headers go out only once the engine has accepted
/// the request (documents found, conversation well formed, prompt within the model's positions) and produced its first
/// text, so those errors are ordinary 4xx answers. A failure after that (the engine failing mid-answer) is sent as an
/// error event, <c>data: {"error":{...}}</c>, and the stream then ends cleanly: a client sees the error, never a
/// dropped connection.
/// </summary>
internal static class ChatCompletionEndpoint
{
    /// <param name="http">The request.</param>
    /// <param name="engine">The engine that answers.</param>
    /// <param name="stream">What streams the answer; the engine's <see cref="KvLinkEngine.ChatStreamingAsync"/> unless a
    /// test puts a failing step in its way.</param>
    public static async Task HandleAsync(HttpContext http, KvLinkEngine engine,
        Func<ChatCompletionRequest, CancellationToken, IAsyncEnumerable<GenerationUpdate>>? stream = null)
    {
        var ct = http.RequestAborted;
        ChatCompletionRequest request;
        try
        {
            using var body = await ReadBodyAsync(http);
            request = ChatCompletionRequest.Read(body.RootElement, engine, http.User);
        }
        catch (OpenAIRequestException e) { await OpenAIErrors.WriteAsync(http, e.Status, e.Message, e.Param, e.Code); return; }
        catch (BadHttpRequestException e) { await OpenAIErrors.WriteAsync(http, e.StatusCode, $"The request body could not be read: {e.Message}"); return; }

        var json = new ChatCompletionJson(engine.ModelId);
        if (!request.Stream)
        {
            GenerationResult result;
            try { result = await engine.ChatAsync(request.Messages, request.Documents, request.Options, ct); }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                var error = OpenAIRequestException.FromEngine(e);
                ServerLog.Failed(http, error, e);
                await OpenAIErrors.WriteAsync(http, error.Status, error.Message, error.Param, error.Code);
                return;
            }
            http.Response.ContentType = "application/json; charset=utf-8";
            await http.Response.WriteAsync(JsonText.Of(json.Completion(result)), ct);
            return;
        }
        var updates = stream?.Invoke(request, ct) ?? engine.ChatStreamingAsync(request.Messages, request.Documents, request.Options, ct);
        await StreamAsync(http, updates.GetAsyncEnumerator(ct), request, json, ct);
    }

    private static async Task<JsonDocument> ReadBodyAsync(HttpContext http)
    {
        using var buffer = new MemoryStream();
        await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
        if (buffer.Length == 0) throw OpenAIRequestException.Invalid(null, "The request body is empty; send a JSON chat-completions request.");
        try { return JsonDocument.Parse(buffer.ToArray()); }
        catch (JsonException e) { throw OpenAIRequestException.Invalid(null, $"The request body is not valid JSON: {e.Message}"); }
    }

    private static async Task StreamAsync(HttpContext http, IAsyncEnumerator<GenerationUpdate> updates, ChatCompletionRequest request, ChatCompletionJson json, CancellationToken ct)
    {
        await using var _ = updates;
        bool more;
        int logprobsSent = 0;
        // The first update comes after the engine has prepared the request (documents, conversation, prompt length):
        // its errors are still answered with a status and a body.
        try { more = await updates.MoveNextAsync(); }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            var error = OpenAIRequestException.FromEngine(e);
            ServerLog.Failed(http, error, e);
            await OpenAIErrors.WriteAsync(http, error.Status, error.Message, error.Param, error.Code);
            return;
        }

        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        await SendAsync(http, json.Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }), ct);
        while (more)
        {
            var update = updates.Current;
            if (update.Result is { } result)
            {
                // Tokens whose text never appeared (a matched stop sequence) bring their logprobs with the finishing chunk.
                var rest = result.Logprobs?.Skip(logprobsSent).ToList();
                await SendAsync(http, json.Chunk(new JsonObject(), ChatCompletionJson.Finish(result.FinishReason), rest is { Count: > 0 } ? ChatCompletionJson.Logprobs(rest) : null), ct);
                if (request.IncludeUsage) await SendAsync(http, json.UsageChunk(result), ct);
            }
            else if (update.Delta.Length > 0)
            {
                // Each chunk carries the logprobs of the tokens its text came from.
                await SendAsync(http, json.Chunk(new JsonObject { ["content"] = update.Delta }, null, ChatCompletionJson.Logprobs(update.Logprobs)), ct);
                logprobsSent += update.Logprobs?.Count ?? 0;
            }

            try { more = await updates.MoveNextAsync(); }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                // Headers are gone: the error travels as an event, and the response then ends normally.
                var error = OpenAIRequestException.FromEngine(e);
                ServerLog.Failed(http, error, e);
                await SendAsync(http, OpenAIErrors.Body(error.Status, error.Message, error.Param, error.Code), ct);
                return;
            }
        }
        await http.Response.WriteAsync("data: [DONE]\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }

    private static async Task SendAsync(HttpContext http, JsonObject data, CancellationToken ct)
    {
        await http.Response.WriteAsync("data: " + JsonText.Of(data) + "\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }
}
