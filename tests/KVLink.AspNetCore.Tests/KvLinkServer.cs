using System.Net;
using System.Runtime.CompilerServices;
using System.Security.Claims;
using System.Text.Encodings.Web;
using System.Threading.RateLimiting;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Hosting;
using KVLink.Demo;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace KVLink.AspNetCore.Tests;

/// <summary>
/// A real ASP.NET Core app on a loopback port, serving the demo model through the package: <c>/v1</c> as an app maps it,
/// plus the same endpoints behind ASP.NET Core's own conventions (<c>/secured/v1</c>: RequireAuthorization with a bearer
/// key; <c>/limited/v1</c>: RequireRateLimiting, one request a minute; <c>/small/v1</c>: a 1 KiB request-size limit) and
/// <c>/failing/v1</c>, whose engine stream fails after its first text, as an engine failing mid-answer does.
/// </summary>
public sealed class KvLinkServer : IAsyncLifetime
{
    public const string ApiKey = "test-key";
    private WebApplication? _app;

    public Uri BaseAddress { get; private set; } = null!;
    public KvLinkEngine Engine => _app!.Services.GetRequiredService<KvLinkEngine>();
    public HttpClient Http { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddKvLink(o =>
        {
            o.ModelPath = DemoModel.FindFolder() ?? throw new DirectoryNotFoundException("models/kvlink-demo was not copied next to the tests");
            o.DType = ComputeDType.Float32;
            o.LinkTokens = 5;
            o.PrecomputeSlots = 3;
        });
        builder.Services.AddAuthentication("key").AddScheme<AuthenticationSchemeOptions, ApiKeyHandler>("key", null);
        builder.Services.AddAuthorization();
        builder.Services.AddRateLimiter(o =>
        {
            o.AddFixedWindowLimiter("one", w => { w.PermitLimit = 1; w.Window = TimeSpan.FromMinutes(1); w.QueueLimit = 0; });
            o.OnRejected = (context, _) => new ValueTask(OpenAIErrors.WriteAsync(context.HttpContext, 429, "Too many requests; retry in a minute.", code: "rate_limit_exceeded"));
        });

        _app = builder.Build();
        _app.UseAuthentication();
        _app.UseAuthorization();
        _app.UseRateLimiter();
        _app.MapKvLinkDocuments();
        _app.MapKvLinkOpenAI();
        _app.MapKvLinkOpenAI("/secured/v1").RequireAuthorization();
        _app.MapKvLinkOpenAI("/limited/v1").RequireRateLimiting("one");
        _app.MapKvLinkOpenAI("/small/v1").WithMetadata(new RequestSizeLimitAttribute(1024));
        var engine = new Lazy<KvLinkEngine>(() => _app.Services.GetRequiredService<KvLinkEngine>());
        _app.MapPost("/failing/v1/chat/completions", (HttpContext http) => ChatCompletionEndpoint.HandleAsync(http, engine.Value,
            (request, ct) => FailAfterFirstText(engine.Value.ChatStreamingAsync(request.Messages, request.Documents, request.Options, ct))));
        await _app.StartAsync();

        string address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        BaseAddress = new Uri(address);
        Http = new HttpClient { BaseAddress = BaseAddress };
    }

    public async Task DisposeAsync()
    {
        Http?.Dispose();
        if (_app is not null) { await _app.StopAsync(); await _app.DisposeAsync(); }
    }

    /// <summary>The engine's own stream up to its first text, then the exception an engine failure would raise.</summary>
    private static async IAsyncEnumerable<GenerationUpdate> FailAfterFirstText(IAsyncEnumerable<GenerationUpdate> stream, [EnumeratorCancellation] CancellationToken ct = default)
    {
        await foreach (var update in stream.WithCancellation(ct))
        {
            yield return update;
            if (update.Delta.Length > 0) throw new InvalidOperationException("The model failed in the middle of the answer.");
        }
    }

    /// <summary>Accepts <c>Authorization: Bearer test-key</c> (what an OpenAI client sends as its API key).</summary>
    private sealed class ApiKeyHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
    {
        protected override Task<AuthenticateResult> HandleAuthenticateAsync() =>
            Task.FromResult(Request.Headers.Authorization.ToString() == "Bearer " + ApiKey
                ? AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, "client")], "key")), "key"))
                : AuthenticateResult.NoResult());

        protected override Task HandleChallengeAsync(AuthenticationProperties properties) =>
            OpenAIErrors.WriteAsync(Context, 401, "Invalid or missing API key.", code: "invalid_api_key");
    }
}

[CollectionDefinition(Name)]
public sealed class ServerCollection : ICollectionFixture<KvLinkServer>
{
    public const string Name = "KVLink server";
}
