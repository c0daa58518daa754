using System.Net;
using KVLink.AspNetCore;
using KVLink.Core.Engine;
using KVLink.Core.Hosting;

namespace KVLink.AspNetCore.Sample;

/// <summary>The sample's application: built here so that tests and scripts start the very same app on loopback.</summary>
public static class SampleApp
{
    /// <summary>Builds the app from command-line style arguments (<c>--Port 5080</c>, <c>--KvLink:ModelPath ...</c>).</summary>
    public static WebApplication Build(string[] args)
    {
        var builder = WebApplication.CreateBuilder(args);

        // Loopback only: this sample has no authentication (docs/server.md shows RequireAuthorization on the endpoints).
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

        var app = builder.Build();
        app.MapGet("/", (KvLinkEngine engine) => Results.Ok(new { service = "KVLink.AspNetCore.Sample", model = engine.ModelId, path = engine.Options.ModelPath, linkTokens = engine.Options.LinkTokens, queue = engine.QueueLength }));

        // Model loaded, queue length, store reachable, CPU tier and dtype (503 when unhealthy), as JSON with the check's data.
        app.MapHealthChecks("/health", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions
        {
            ResponseWriter = (context, report) =>
            {
                context.Response.ContentType = KvLinkServiceCollectionExtensions.HealthContentType;
                return report.WriteKvLinkJsonAsync(context.Response.Body, context.RequestAborted);
            },
        });

        app.MapKvLinkDocuments();   // POST /documents, GET /documents
        app.MapKvLinkOpenAI();      // POST /v1/chat/completions, GET /v1/models, GET /v1/models/{id}

        // The chat page (embedded in the assembly, so it is served whatever the content root).
        app.MapGet("/chat", () => Results.Stream(typeof(SampleApp).Assembly.GetManifestResourceStream("KVLink.AspNetCore.Sample.chat.html")!, "text/html; charset=utf-8"));
        return app;
    }
}
