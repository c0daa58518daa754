using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Hosting;
using KVLink.Core.Native;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace KVLink.Core.Tests.Hosting;

/// <summary>Host start (eager loading), health checks, validation messages, content-root paths and the chat client entry point.</summary>
public sealed class HostStartTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static async Task StartHostedServicesAsync(IServiceProvider sp)
    {
        // What the host does at start for KVLink (the health-check publisher, also an IHostedService, is not under test).
        foreach (var service in sp.GetServices<IHostedService>().OfType<KvLinkEngineLoader>()) await service.StartAsync(CancellationToken.None);
    }

    [Fact]
    public async Task The_engine_loads_at_host_start_by_default_and_a_bad_checkpoint_fails_the_start()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure);
        services.AddLogging().AddHealthChecks().AddKvLinkHealthCheck();
        await using var sp = services.BuildServiceProvider();
        var health = sp.GetRequiredService<HealthCheckService>();

        var before = await health.CheckHealthAsync();
        Assert.Equal(HealthStatus.Unhealthy, before.Status);
        Assert.Contains("not loaded", before.Entries["kvlink"].Description);

        await StartHostedServicesAsync(sp);
        var after = await health.CheckHealthAsync();
        Assert.Equal(HealthStatus.Healthy, after.Status);
        var data = after.Entries["kvlink"].Data;
        Assert.Equal((true, 0, true, "memory"), ((bool)data["loaded"], (int)data["queue_length"], (bool)data["store_reachable"], (string)data["store"]));
        Assert.Equal(sp.GetRequiredService<KvLinkEngine>().ModelId, data["model"]);

        // A folder that passes validation (it has a config.json) but is no checkpoint: the start fails, not the first request.
        using var bad = new TempFolder();
        await File.WriteAllTextAsync(bad.File("config.json"), "{ not json");
        var broken = new ServiceCollection();
        broken.AddKeyedKvLink("broken", o => { fixture.Configure(o); o.ModelPath = bad.Path; });
        broken.AddLogging().AddHealthChecks().AddKvLinkHealthCheck("broken");
        await using var brokenSp = broken.BuildServiceProvider();
        await Assert.ThrowsAnyAsync<Exception>(() => StartHostedServicesAsync(brokenSp));
        var report = await brokenSp.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        Assert.Equal(HealthStatus.Unhealthy, report.Status);
        Assert.Contains("failed to load", report.Entries["kvlink-broken"].Description);
        Assert.NotNull(report.Entries["kvlink-broken"].Exception);
    }

    [Fact]
    public async Task LoadOnStart_false_leaves_loading_to_the_first_use()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure).LoadOnStart(false);
        services.AddLogging().AddHealthChecks().AddKvLinkHealthCheck(tags: ["ready"]);
        await using var sp = services.BuildServiceProvider();
        await StartHostedServicesAsync(sp);
        var health = sp.GetRequiredService<HealthCheckService>();
        Assert.Equal(HealthStatus.Unhealthy, (await health.CheckHealthAsync()).Status);
        sp.GetRequiredService<KvLinkEngine>();
        Assert.Equal(HealthStatus.Healthy, (await health.CheckHealthAsync(c => c.Tags.Contains("ready"))).Status);
    }

    [Fact]
    public async Task Every_validation_failure_is_reported_at_once_under_its_configuration_path()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["KvLink:ModelPath"] = fixture.Folder,
            ["KvLink:LinkTokens"] = "-1",
            ["KvLink:PrecomputeSlots"] = "0",
            ["KvLink:Device"] = "gpu0",
            ["KvLink:Generation:MaxNewTokens"] = "0",
            ["KvLink:Generation:TopP"] = "2",
        }).Build();
        var services = new ServiceCollection();
        services.AddKvLink(config.GetSection("KvLink"));
        await using var sp = services.BuildServiceProvider();

        var e = Assert.Throws<OptionsValidationException>(() => sp.GetRequiredService<IOptions<KvLinkOptions>>().Value);
        Assert.Equal(
        [
            "KvLink:LinkTokens must be >= 0 (is -1).",
            "KvLink:PrecomputeSlots must be >= 1 (is 0).",
            "KvLink:Device 'gpu0' is not a device name: use \"cpu\", \"cuda\" or \"cuda:N\".",
            "KvLink:Generation:MaxNewTokens must be positive (is 0).",
            "KvLink:Generation:TopP must be in (0, 1] (is 2).",
        ], e.Failures);
        // The same list at host start (ValidateOnStart), before anything is loaded.
        var startup = Assert.ThrowsAny<Exception>(() => sp.GetRequiredService<IStartupValidator>().Validate());
        Assert.Contains("KvLink:Generation:MaxNewTokens must be positive", startup.ToString());
    }

    [Fact]
    public async Task A_link_token_count_the_format_cannot_give_is_named_LinkTokens()
    {
        var services = new ServiceCollection();
        services.AddKeyedKvLink("m", o => { fixture.Configure(o); o.LinkTokens = 100_000; });
        await using var sp = services.BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => sp.GetRequiredService<IOptionsMonitor<KvLinkOptions>>().Get("m"));
        var failure = Assert.Single(e.Failures);
        Assert.StartsWith("KvLinkOptions['m']:LinkTokens does not fit the prompt format", failure);
        Assert.DoesNotContain("documents", failure.Split(':')[1]);
    }

    [Fact]
    public async Task A_relative_ModelPath_is_resolved_against_the_content_root()
    {
        string parent = Path.GetDirectoryName(fixture.Folder)!;
        var services = new ServiceCollection();
        services.AddSingleton<IHostEnvironment>(new Environment(parent));
        services.AddKvLink(o => { fixture.Configure(o); o.ModelPath = Path.GetFileName(fixture.Folder); });
        await using var sp = services.BuildServiceProvider();
        Assert.Equal(fixture.Folder, sp.GetRequiredService<IOptions<KvLinkOptions>>().Value.ModelPath);
        Assert.Equal(Path.GetFileName(fixture.Folder), sp.GetRequiredService<KvLinkEngine>().ModelId);
    }

    [Fact]
    public void A_missing_LibTorch_runtime_names_the_packages_to_reference()
    {
        foreach (Func<bool> probe in new Func<bool>[] { () => false, () => throw new DllNotFoundException("libLibTorchSharp.so: cannot open shared object file") })
        {
            var e = Assert.Throws<InvalidOperationException>(() => TorchSharpLoader.CheckRuntime(probe));
            Assert.Contains("TorchSharp-cpu", e.Message);
            Assert.Contains("TorchSharp-cuda-linux", e.Message);
            Assert.Contains("TorchSharp-cuda-windows", e.Message);
        }
        TorchSharpLoader.EnsureRuntime(); // this test run has TorchSharp-cpu
    }

    [Fact]
    public async Task Chat_client_takes_per_call_KvLinkGenerationOptions_and_stamps_responses_with_the_container_clock()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 2, 3, 4, 5, TimeSpan.Zero));
        var services = new ServiceCollection();
        services.AddSingleton<TimeProvider>(time);
        services.AddKvLink(fixture.Configure);
        await using var sp = services.BuildServiceProvider();
        var engine = sp.GetRequiredService<KvLinkEngine>();
        var chat = sp.GetRequiredService<IChatClient>();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(6));

        var options = new ChatOptions { RawRepresentationFactory = _ => new KvLinkGenerationOptions { MaxNewTokens = 2, Mode = ContextMode.FullPrefill } }.WithDocuments(id);
        var response = await chat.GetResponseAsync("question?", options);
        var raw = Assert.IsType<GenerationResult>(response.RawRepresentation);
        Assert.True(raw.Usage.GeneratedTokens <= 2);
        Assert.Equal(0, raw.Usage.CachedTokens); // full prefill, from the factory's options
        Assert.Equal(time.GetUtcNow(), response.CreatedAt);
        Assert.Equal(engine.ModelId, response.ModelId);

        // Set ChatOptions properties still apply over the factory's options.
        options.MaxOutputTokens = 1;
        Assert.True(((GenerationResult)(await chat.GetResponseAsync("question?", options)).RawRepresentation!).Usage.GeneratedTokens <= 1);
        time.Advance(TimeSpan.FromMinutes(5));
        await foreach (var update in chat.GetStreamingResponseAsync("question?", options))
            Assert.Equal(time.GetUtcNow(), update.CreatedAt);

        options.RawRepresentationFactory = _ => "not options";
        await Assert.ThrowsAsync<ArgumentException>(() => chat.GetResponseAsync("question?", options));
    }

    private sealed class Environment(string contentRoot) : IHostEnvironment
    {
        public string EnvironmentName { get; set; } = "Test";
        public string ApplicationName { get; set; } = "tests";
        public string ContentRootPath { get; set; } = contentRoot;
        public IFileProvider ContentRootFileProvider { get; set; } = new NullFileProvider();
    }
}
