using System.Collections.Concurrent;
using System.Net;
using KVLink.Core.Engine;
using KVLink.Core.Hosting;
using KVLink.Core.Prompting;
using Microsoft.Extensions.AI;

namespace KVLink.AspNetCore;

/// <summary>The sample's application: built here so that tests can start the very same app on loopback.</summary>
public static class SampleApp
{
    /// <summary>Builds the app from command-line style arguments (<c>--Port 5080</c>, <c>--KvLink:ModelPath ...</c>).</summary>
    public static WebApplication Build(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);

        // Loopback only: this sample has no authentication.
        int port = builder.Configuration.GetValue("Port", 5080);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port));

        // No model configured (KvLink:ModelPath): use the demo model (KVLink.Demo copies it next to the app), which answers
        // questions about the synthetic corpus's fictional people, cities and companies.
        if (string.IsNullOrWhiteSpace(builder.Configuration["KvLink:ModelPath"]))
            builder.Configuration["KvLink:ModelPath"] = KVLink.Demo.DemoModel.FindFolder()
                ?? throw new DirectoryNotFoundException("The demo model (models/kvlink-demo) was not copied next to the app; set KvLink:ModelPath.");

        // The host validates the options and loads the model when it starts (KvLinkOptions.LoadOnStart), so a bad
        // configuration or checkpoint stops the app at start rather than failing the first request.
        builder.Services.AddKvLink(builder.Configuration.GetSection("KvLink"));
        builder.Services.AddHealthChecks().AddKvLinkHealthCheck();
        builder.Services.AddSingleton<DocumentList>();

        var app = builder.Build();

        // Caller mistakes become 4xx answers instead of 500s: unknown document ids, empty text or question, too long a prompt.
        app.Use(async (context, next) =>
        {
            try { await next(context); }
            catch (KeyNotFoundException e) when (!context.Response.HasStarted) { await Results.Problem(e.Message, statusCode: 404).ExecuteAsync(context); }
            catch (ArgumentException e) when (!context.Response.HasStarted) { await Results.Problem(e.Message, statusCode: 400).ExecuteAsync(context); }
            catch (NotSupportedException e) when (!context.Response.HasStarted) { await Results.Problem(e.Message, statusCode: 400).ExecuteAsync(context); }
        });

        app.MapGet("/", (KvLinkEngine engine) => Results.Ok(new { service = "KVLink.AspNetCore", model = engine.ModelId, path = engine.Options.ModelPath, linkTokens = engine.Options.LinkTokens, queue = engine.QueueLength }));

        // Model loaded, queue length, store reachable (503 when unhealthy).
        app.MapHealthChecks("/health");

        app.MapPost("/documents", async (DocumentRequest doc, KvLinkEngine engine, DocumentList list, CancellationToken ct) =>
        {
            string id = await engine.PrecomputeAsync(new KvLinkDocument(doc.Text, doc.Title, doc.Id), ct);
            list.Add(id, doc.Title ?? doc.Text[..Math.Min(40, doc.Text.Length)]);
            return Results.Ok(new { id });
        });

        // The documents posted to this process (for the chat page's picker).
        app.MapGet("/documents", (DocumentList list) => Results.Ok(list.All()));

        app.MapPost("/chat", async (ChatRequest request, IChatClient chat, CancellationToken ct) =>
        {
            var response = await chat.GetResponseAsync(request.Question, Options(request), ct);
            return Results.Ok(new
            {
                text = response.Text,
                finishReason = response.FinishReason?.Value,
                usage = new { input = response.Usage?.InputTokenCount, cachedInput = response.Usage?.CachedInputTokenCount, output = response.Usage?.OutputTokenCount },
            });
        });

        // Streams the answer as plain text, flushing every delta as soon as the model produces it.
        app.MapPost("/chat/stream", async (ChatRequest request, IChatClient chat, HttpResponse http, CancellationToken ct) =>
        {
            http.ContentType = "text/plain; charset=utf-8";
            await foreach (var update in chat.GetStreamingResponseAsync(request.Question, Options(request), ct))
            {
                if (update.Text.Length == 0) continue;
                await http.WriteAsync(update.Text, ct);
                await http.Body.FlushAsync(ct);
            }
        });

        OpenAiEndpoints.Map(app);

        // The chat page (embedded in the assembly, so it is served whatever the content root).
        app.MapGet("/chat", () => Results.Stream(typeof(SampleApp).Assembly.GetManifestResourceStream("KVLink.AspNetCore.chat.html")!, "text/html; charset=utf-8"));
        return app;
    }

    private static ChatOptions Options(ChatRequest request) =>
        new ChatOptions { MaxOutputTokens = request.MaxTokens }.WithDocuments(request.Documents ?? []);
}

/// <summary>A document to precompute.</summary>
internal sealed record DocumentRequest(string Text, string? Title = null, string? Id = null);

/// <summary>A question and the ids of the documents to answer from.</summary>
internal sealed record ChatRequest(string Question, string[]? Documents = null, int? MaxTokens = null);

/// <summary>Ids and titles of the documents posted to this process, in order.</summary>
internal sealed class DocumentList
{
    private readonly ConcurrentDictionary<string, (long Order, string Title)> _docs = new();
    private long _next;

    public void Add(string id, string title) => _docs.TryAdd(id, (Interlocked.Increment(ref _next), title));

    public IEnumerable<object> All() => _docs.OrderBy(d => d.Value.Order).Select(d => new { id = d.Key, title = d.Value.Title });
}
