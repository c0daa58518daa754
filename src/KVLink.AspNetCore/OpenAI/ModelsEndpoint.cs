using System.Text.Json.Nodes;
using KVLink.Core.Engine;
using Microsoft.AspNetCore.Http;

namespace KVLink.AspNetCore;

/// <summary>
/// <c>GET /v1/models</c> and <c>GET /v1/models/{id}</c>: the one served model. Its <c>created</c> is the time its
/// checkpoint was written (the folder's <c>config.json</c>), or when the engine was loaded if that cannot be read.
/// </summary>
internal sealed class ModelsEndpoint(KvLinkEngine engine)
{
    private readonly Lazy<long> _created = new(() => Created(engine));

    public Task ListAsync(HttpContext http) =>
        WriteAsync(http, new JsonObject { ["object"] = "list", ["data"] = new JsonArray(Model()) });

    public Task RetrieveAsync(HttpContext http, string id) => id == engine.ModelId
        ? WriteAsync(http, Model())
        : OpenAIErrors.WriteAsync(http, 404, $"The model '{id}' does not exist; this server serves '{engine.ModelId}'.", "model", "model_not_found");

    private JsonObject Model() => new() { ["id"] = engine.ModelId, ["object"] = "model", ["created"] = _created.Value, ["owned_by"] = "kvlink" };

    private static Task WriteAsync(HttpContext http, JsonObject body)
    {
        http.Response.ContentType = "application/json; charset=utf-8";
        return http.Response.WriteAsync(JsonText.Of(body), http.RequestAborted);
    }

    private static long Created(KvLinkEngine engine)
    {
        string? config = engine.Options.ModelPath is { Length: > 0 } path ? Path.Combine(path, "config.json") : null;
        var time = config is not null && File.Exists(config) ? new DateTimeOffset(File.GetLastWriteTimeUtc(config)) : DateTimeOffset.UtcNow;
        return time.ToUnixTimeSeconds();
    }
}
