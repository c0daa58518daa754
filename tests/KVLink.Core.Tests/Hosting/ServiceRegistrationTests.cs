using KVLink.TestSupport;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Hosting;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace KVLink.Core.Tests.Hosting;

public sealed class ServiceRegistrationTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    [Fact]
    public async Task AddKvLink_registers_engine_memory_store_and_chat_client()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure);
        await using var sp = services.BuildServiceProvider(new ServiceProviderOptions { ValidateScopes = true, ValidateOnBuild = true });

        var engine = sp.GetRequiredService<KvLinkEngine>();
        var store = sp.GetRequiredService<IKvCacheStore>();
        Assert.IsType<MemoryKvCacheStore>(store);
        Assert.Same(store, engine.Store);
        Assert.Equal("default", engine.Name);
        Assert.Equal(1, engine.Options.LinkTokens);

        var chat = sp.GetRequiredService<IChatClient>();
        Assert.IsType<KvLinkChatClient>(chat);
        Assert.Same(engine, chat.GetService<KvLinkEngine>());
        Assert.Equal("kvlink", chat.GetService<ChatClientMetadata>()!.ProviderName);
        Assert.Same(sp.GetRequiredService<KvLinkEngine>(), engine);
    }

    [Fact]
    public async Task A_synchronously_disposed_container_disposes_the_engine()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure);
        KvLinkEngine engine;
        using (var sp = services.BuildServiceProvider())
        {
            engine = sp.GetRequiredService<KvLinkEngine>();
            await engine.PrecomputeAsync(CheckpointFixture.Doc(9));
        }
        await Assert.ThrowsAsync<ObjectDisposedException>(() => engine.PrecomputeAsync(CheckpointFixture.Doc(9)));
    }

    [Fact]
    public async Task Keyed_registrations_give_separate_engines_side_by_side()
    {
        var services = new ServiceCollection();
        services.AddKeyedKvLink("small", o => { fixture.Configure(o); o.LinkTokens = 0; });
        services.AddKeyedKvLink("linked", o => { fixture.Configure(o); o.LinkTokens = 5; o.Mode = ContextMode.FullPrefill; });
        await using var sp = services.BuildServiceProvider();

        var a = sp.GetRequiredKeyedService<KvLinkEngine>("small");
        var b = sp.GetRequiredKeyedService<KvLinkEngine>("linked");
        Assert.NotSame(a, b);
        Assert.Equal(("small", 0), (a.Name, a.Options.LinkTokens));
        Assert.Equal(("linked", 5, ContextMode.FullPrefill), (b.Name, b.Options.LinkTokens, b.Options.Mode));
        Assert.NotSame(a.Store, b.Store);
        Assert.Same(a.Store, sp.GetRequiredKeyedService<IKvCacheStore>("small"));
        Assert.Same(b, sp.GetRequiredKeyedService<IChatClient>("linked").GetService<KvLinkEngine>());
        // The metadata names the model (the checkpoint folder here, which has no _name_or_path), not the DI key.
        Assert.Equal(Path.GetFileName(fixture.Folder), a.ModelId);
        Assert.Equal(a.ModelId, sp.GetRequiredKeyedService<IChatClient>("small").GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.Null(sp.GetService<KvLinkEngine>()); // no default engine was registered
    }

    [Fact]
    public async Task Configuration_section_binds_every_plain_option()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["KvLink:ModelPath"] = fixture.Folder,
            ["KvLink:LinkTokens"] = "0",
            ["KvLink:Mode"] = "FullPrefill",
            ["KvLink:DType"] = "Float32",
            ["KvLink:PrecomputeSlots"] = "2",
            ["KvLink:SlotPolicy"] = "Exact",
            ["KvLink:Device"] = "cpu",
            ["KvLink:Generation:MaxNewTokens"] = "7",
            ["KvLink:Generation:Temperature"] = "0.5",
            ["KvLink:Generation:Seed"] = "3",
            ["KvLink:PrecomputeMaxWait"] = "00:00:30",
        }).Build();
        var services = new ServiceCollection();
        services.AddKvLink(config.GetSection("KvLink"));
        await using var sp = services.BuildServiceProvider();

        var o = sp.GetRequiredService<IOptions<KvLinkOptions>>().Value;
        Assert.Equal((fixture.Folder, 0, ContextMode.FullPrefill, ComputeDType.Float32, 2, "cpu"), (o.ModelPath, o.LinkTokens, o.Mode, o.DType, o.PrecomputeSlots, o.Device));
        Assert.Equal((7, 0.5f, (int?)3), (o.Generation.MaxNewTokens, o.Generation.Temperature, o.Generation.Seed));
        Assert.Equal(TimeSpan.FromSeconds(30), o.PrecomputeMaxWait);
        Assert.Equal(2, sp.GetRequiredService<KvLinkEngine>().Options.PrecomputeSlots);
        Assert.Equal(SlotPolicy.Exact, sp.GetRequiredService<KvLinkEngine>().Options.SlotPolicy);
    }

    [Fact]
    public async Task Keyed_configuration_and_unknown_keys()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Models:a:ModelPath"] = fixture.Folder,
            ["Models:a:LinkTokens"] = "3",
            ["Models:b:ModelPath"] = fixture.Folder,
            ["Models:b:LinkToken"] = "3", // typo
        }).Build();
        var services = new ServiceCollection();
        services.AddKeyedKvLink("a", config.GetSection("Models:a"));
        services.AddKeyedKvLink("b", config.GetSection("Models:b"));
        await using var sp = services.BuildServiceProvider();

        var monitor = sp.GetRequiredService<IOptionsMonitor<KvLinkOptions>>();
        Assert.Equal(3, monitor.Get("a").LinkTokens);
        var e = Assert.Throws<InvalidOperationException>(() => monitor.Get("b"));
        Assert.Contains("LinkToken", e.Message);
    }

    [Fact]
    public async Task The_containers_TimeProvider_is_the_schedulers_clock()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        var services = new ServiceCollection();
        services.AddSingleton<TimeProvider>(clock);
        services.AddKvLink(o => o.ModelPath = fixture.Folder);
        services.AddKeyedKvLink("other", o => o.ModelPath = fixture.Folder);
        await using var sp = services.BuildServiceProvider();
        var monitor = sp.GetRequiredService<IOptionsMonitor<KvLinkOptions>>();
        Assert.Same(clock, monitor.Get(Options.DefaultName).TimeProvider);
        Assert.Same(clock, monitor.Get("other").TimeProvider);

        // Without one registered, the system clock.
        await using var plain = new ServiceCollection().AddKvLink(o => o.ModelPath = fixture.Folder).Services.BuildServiceProvider();
        Assert.Same(TimeProvider.System, plain.GetRequiredService<IOptionsMonitor<KvLinkOptions>>().Get(Options.DefaultName).TimeProvider);
    }

    [Theory]
    [InlineData(null, "ModelPath is required")]
    [InlineData("/nonexistent/kvlink-model", "ModelPath '/nonexistent/kvlink-model' does not exist")]
    public async Task Missing_or_wrong_model_path_fails_naming_ModelPath(string? path, string expected)
    {
        var services = new ServiceCollection();
        services.AddKvLink(o => o.ModelPath = path);
        await using var sp = services.BuildServiceProvider();

        var e = Assert.Throws<OptionsValidationException>(() => sp.GetRequiredService<KvLinkEngine>());
        Assert.Contains("KvLinkOptions:ModelPath", e.Message);
        Assert.Contains(expected, e.Message);
        // ValidateOnStart: the host's start-up validator reports the same failure before any request.
        var startup = Assert.ThrowsAny<Exception>(() => sp.GetRequiredService<IStartupValidator>().Validate());
        Assert.Contains("ModelPath", startup.ToString());
    }

    [Fact]
    public async Task Folder_without_config_json_is_rejected()
    {
        string empty = Directory.CreateTempSubdirectory("kvlink-empty").FullName;
        try
        {
            var services = new ServiceCollection();
            services.AddKvLink(o => o.ModelPath = empty);
            await using var sp = services.BuildServiceProvider();
            var e = Assert.Throws<OptionsValidationException>(() => sp.GetRequiredService<IOptions<KvLinkOptions>>().Value);
            Assert.Contains("has no config.json", e.Message);
        }
        finally { Directory.Delete(empty, true); }
    }

    [Theory]
    [InlineData("LinkTokens")]
    [InlineData("PrecomputeSlots")]
    [InlineData("SlotPolicy")]
    [InlineData("Device")]
    [InlineData("MaxRunningSequences")]
    [InlineData("MaxLiveCacheBytes")]
    [InlineData("MaxStepTokens")]
    [InlineData("PrecomputeMaxWait")]
    [InlineData("Generation.MaxNewTokens")]
    public async Task Invalid_settings_fail_naming_the_option(string option)
    {
        var services = new ServiceCollection();
        services.AddKeyedKvLink("m", o =>
        {
            fixture.Configure(o);
            switch (option)
            {
                case "LinkTokens": o.LinkTokens = -1; break;
                case "PrecomputeSlots": o.PrecomputeSlots = 0; break;
                case "SlotPolicy": o.SlotPolicy = (SlotPolicy)7; break;
                case "Device": o.Device = "gpu0"; break;
                case "MaxRunningSequences": o.MaxRunningSequences = 0; break;
                case "MaxLiveCacheBytes": o.MaxLiveCacheBytes = 0; break;
                case "MaxStepTokens": o.MaxStepTokens = -3; break;
                case "PrecomputeMaxWait": o.PrecomputeMaxWait = TimeSpan.FromSeconds(-2); break;
                default: o.Generation = new KVLink.Core.Generation.GenerationOptions { MaxNewTokens = 0 }; break;
            }
        });
        await using var sp = services.BuildServiceProvider();
        var e = Assert.Throws<OptionsValidationException>(() => sp.GetRequiredKeyedService<KvLinkEngine>("m"));
        Assert.Contains($"KvLinkOptions['m']:{option.Replace('.', ':')} ", e.Message);
    }

    [Fact]
    public async Task A_registered_store_or_UseStore_replaces_the_memory_default()
    {
        var mine = new MemoryKvCacheStore();
        var services = new ServiceCollection();
        services.AddSingleton<IKvCacheStore>(mine);
        services.AddKvLink(fixture.Configure);
        services.AddKeyedKvLink("custom", fixture.Configure).UseStore<CountingStore>();
        await using var sp = services.BuildServiceProvider();

        Assert.Same(mine, sp.GetRequiredService<KvLinkEngine>().Store);
        var keyed = sp.GetRequiredKeyedService<KvLinkEngine>("custom");
        var counting = Assert.IsType<CountingStore>(keyed.Store);
        await keyed.PrecomputeAsync(CheckpointFixture.Doc(1));
        Assert.Equal(1, counting.Puts);
    }
}
