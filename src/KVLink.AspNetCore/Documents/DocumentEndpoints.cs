using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;
using Microsoft.AspNetCore.Http;

namespace KVLink.AspNetCore;

/// <summary>
/// <c>POST /documents</c> precomputes a document's cache once (<c>{"text", "title"?, "id"?}</c> → <c>{"id"}</c>), the id
/// that <c>documents</c> of a chat-completions request names; <c>GET /documents</c> lists the documents posted to this
/// process (id and title, in order), for a picker. Errors are OpenAI-shaped like the chat endpoint's.
/// </summary>
internal sealed class DocumentEndpoints(KvLinkEngine engine)
{
    private readonly ConcurrentDictionary<string, (long Order, string Title)> _posted = new();
    private long _next;

    public async Task AddAsync(HttpContext http)
    {
        string text, id;
        string? title;
        try
        {
            using var buffer = new MemoryStream();
            await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
            JsonDocument body;
            try { body = JsonDocument.Parse(buffer.ToArray()); }
            catch (JsonException e) { throw OpenAIRequestException.Invalid(null, $"The request body is not a JSON document: {e.Message}"); }
            using (body)
            {
                if (body.RootElement.ValueKind != JsonValueKind.Object) throw OpenAIRequestException.Invalid(null, "The request body must be a JSON object.");
                var fields = new JsonFields(body.RootElement);
                text = fields.String("text") is { } t && !string.IsNullOrWhiteSpace(t) ? t : throw OpenAIRequestException.Invalid("text", "'text' is required and must not be empty.");
                title = fields.String("title");
                string? given = fields.String("id");
                if (given is not null && string.IsNullOrWhiteSpace(given)) throw OpenAIRequestException.Invalid("id", "'id', when given, must not be empty.");
                id = await engine.PrecomputeAsync(new KvLinkDocument(text, title, given), http.RequestAborted);
            }
        }
        catch (OpenAIRequestException e) { await OpenAIErrors.WriteAsync(http, e.Status, e.Message, e.Param, e.Code); return; }
        catch (BadHttpRequestException e) { await OpenAIErrors.WriteAsync(http, e.StatusCode, $"The request body could not be read: {e.Message}"); return; }
        catch (ArgumentException e) { await OpenAIErrors.WriteAsync(http, 400, e.Message, "text"); return; }
        catch (Exception e) when (!http.RequestAborted.IsCancellationRequested)
        {
            var error = OpenAIRequestException.FromEngine(e);
            ServerLog.Failed(http, error, e);
            await OpenAIErrors.WriteAsync(http, error.Status, error.Message, error.Param, error.Code);
            return;
        }

        _posted.TryAdd(id, (Interlocked.Increment(ref _next), title ?? text[..Math.Min(40, text.Length)]));
        http.Response.ContentType = "application/json; charset=utf-8";
        await http.Response.WriteAsync(JsonText.Of(new JsonObject { ["id"] = id }), http.RequestAborted);
    }

    public Task ListAsync(HttpContext http)
    {
        var list = new JsonArray([.. _posted.OrderBy(d => d.Value.Order).Select(d => (JsonNode)new JsonObject { ["id"] = d.Key, ["title"] = d.Value.Title })]);
        http.Response.ContentType = "application/json; charset=utf-8";
        return http.Response.WriteAsync(JsonText.Of(list), http.RequestAborted);
    }
}
