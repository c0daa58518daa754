using KVLink.Core.Engine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace KVLink.AspNetCore;

/// <summary>
/// Maps KVLink's HTTP endpoints onto an ASP.NET Core app, over the <see cref="KvLinkEngine"/> registered with
/// <c>services.AddKvLink(...)</c>. Each method returns the <see cref="RouteGroupBuilder"/> of its endpoints, so
/// ASP.NET Core's own conventions apply to them: <c>.RequireAuthorization()</c>, <c>.RequireRateLimiting("policy")</c>,
/// <c>.WithMetadata(new RequestSizeLimitAttribute(bytes))</c>, CORS, output caching and so on.
/// </summary>
public static class KvLinkEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps the OpenAI-compatible endpoints under <paramref name="prefix"/>: <c>POST {prefix}/chat/completions</c>
    /// (streaming as server-sent events or not; the extension fields <c>documents</c> and <c>conversation_id</c>),
    /// <c>GET {prefix}/models</c> and <c>GET {prefix}/models/{id}</c>. Every error is OpenAI-shaped
    /// (<see cref="OpenAIErrors"/>). Which fields are supported: docs/server.md.
    /// </summary>
    /// <param name="endpoints">The app (or a route group).</param>
    /// <param name="prefix">The route prefix; OpenAI clients expect <c>/v1</c> after their base address.</param>
    /// <returns>The group of the mapped endpoints, for conventions such as <c>RequireAuthorization()</c>.</returns>
    public static RouteGroupBuilder MapKvLinkOpenAI(this IEndpointRouteBuilder endpoints, string prefix = "/v1")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(prefix);
        var group = endpoints.MapGroup(prefix);
        // Created on first use: the engine is resolved after the host has started (and loaded it).
        var models = new Lazy<ModelsEndpoint>(() => new ModelsEndpoint(Engine(endpoints)));
        group.MapPost("/chat/completions", (HttpContext http) => ChatCompletionEndpoint.HandleAsync(http, Engine(endpoints)));
        group.MapGet("/models", (HttpContext http) => models.Value.ListAsync(http));
        group.MapGet("/models/{id}", (HttpContext http, string id) => models.Value.RetrieveAsync(http, id));
        return group;
    }

    /// <summary>
    /// Maps the document endpoints under <paramref name="prefix"/>: <c>POST {prefix}</c> precomputes a document's
    /// cache (<c>{"text", "title"?, "id"?}</c> → <c>{"id"}</c>, the id a chat request's <c>documents</c> names) and
    /// <c>GET {prefix}</c> lists the documents posted to this app (id and title, in order).
    /// </summary>
    /// <param name="endpoints">The app (or a route group).</param>
    /// <param name="prefix">The route of the documents.</param>
    /// <returns>The group of the mapped endpoints, for conventions such as <c>RequireAuthorization()</c>.</returns>
    public static RouteGroupBuilder MapKvLinkDocuments(this IEndpointRouteBuilder endpoints, string prefix = "/documents")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(prefix);
        var group = endpoints.MapGroup(prefix);
        var documents = new Lazy<DocumentEndpoints>(() => new DocumentEndpoints(Engine(endpoints)));
        group.MapPost("/", (HttpContext http) => documents.Value.AddAsync(http));
        group.MapGet("/", (HttpContext http) => documents.Value.ListAsync(http));
        return group;
    }

    private static KvLinkEngine Engine(IEndpointRouteBuilder endpoints) => endpoints.ServiceProvider.GetRequiredService<KvLinkEngine>();
}
