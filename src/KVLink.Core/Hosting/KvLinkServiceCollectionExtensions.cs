using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using System.Diagnostics.Metrics;

namespace KVLink.Core.Hosting;

/// <summary>
/// Registers KVLink engines: <see cref="KvLinkEngine"/>, its <see cref="IKvCacheStore"/> (an in-memory store
/// unless one is registered or chosen with <see cref="KvLinkBuilder.UseStore(Func{IServiceProvider, IKvCacheStore})"/>),
/// an <see cref="IChatClient"/> (<see cref="KvLinkChatClient"/>) and the shared <see cref="KvLinkMetrics"/>.
/// Options are validated when first used and at host start (<c>ValidateOnStart</c>); the model is loaded
/// when the engine is first resolved.
/// </summary>
public static class KvLinkServiceCollectionExtensions
{
    /// <summary>The logger category of engines created by the container.</summary>
    public const string LoggerCategory = "KVLink.Core.Engine";

    /// <summary>Registers the default KVLink engine configured by <paramref name="configure"/> (which must set <see cref="KvLinkOptions.ModelPath"/>).</summary>
    public static KvLinkBuilder AddKvLink(this IServiceCollection services, Action<KvLinkOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var builder = Register(services, null);
        if (configure is not null) builder.Configure(configure);
        return builder;
    }

    /// <summary>
    /// Registers the default KVLink engine bound to <paramref name="configuration"/> (e.g. the "KvLink" section: ModelPath,
    /// LinkTokens, Mode, DType, PrecomputeSlots, Device, Generation:MaxNewTokens...). Unknown keys are errors, so typos surface.
    /// </summary>
    public static KvLinkBuilder AddKvLink(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return AddKvLink(services).Configure(o => Bind(configuration, o));
    }

    /// <summary>Registers a KVLink engine under <paramref name="name"/> (keyed services and named options), side by side with others.</summary>
    public static KvLinkBuilder AddKeyedKvLink(this IServiceCollection services, string name, Action<KvLinkOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var builder = Register(services, name);
        if (configure is not null) builder.Configure(configure);
        return builder;
    }

    /// <summary>Registers a KVLink engine under <paramref name="name"/>, bound to <paramref name="configuration"/>.</summary>
    public static KvLinkBuilder AddKeyedKvLink(this IServiceCollection services, string name, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return AddKeyedKvLink(services, name).Configure(o => Bind(configuration, o));
    }

    private static void Bind(IConfiguration configuration, KvLinkOptions options) =>
        configuration.Bind(options, b => b.ErrorOnUnknownConfiguration = true);

    private static KvLinkBuilder Register(IServiceCollection services, string? name)
    {
        var builder = new KvLinkBuilder(services, name);
        services.AddOptions<KvLinkOptions>(builder.OptionsName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<KvLinkOptions>, KvLinkOptionsValidator>());
        services.TryAddSingleton(sp => new KvLinkMetrics(sp.GetService<IMeterFactory>()));

        if (name is null)
        {
            services.TryAddSingleton<IKvCacheStore>(sp => new MemoryKvCacheStore(new() { Metrics = sp.GetRequiredService<KvLinkMetrics>() }));
            services.TryAddSingleton(sp => CreateEngine(sp, null));
            services.TryAddSingleton(sp => new KvLinkChatClient(sp.GetRequiredService<KvLinkEngine>()));
            services.TryAddSingleton<IChatClient>(sp => sp.GetRequiredService<KvLinkChatClient>());
        }
        else
        {
            services.TryAddKeyedSingleton<IKvCacheStore>(name, (sp, _) => new MemoryKvCacheStore(new() { Metrics = sp.GetRequiredService<KvLinkMetrics>() }));
            services.TryAddKeyedSingleton(name, (sp, _) => CreateEngine(sp, name));
            services.TryAddKeyedSingleton(name, (sp, _) => new KvLinkChatClient(sp.GetRequiredKeyedService<KvLinkEngine>(name), name));
            services.TryAddKeyedSingleton<IChatClient>(name, (sp, _) => sp.GetRequiredKeyedService<KvLinkChatClient>(name));
        }
        return builder;
    }

    private static KvLinkEngine CreateEngine(IServiceProvider sp, string? name)
    {
        // Get() runs the validators: an invalid configuration fails here with OptionsValidationException.
        var options = sp.GetRequiredService<IOptionsMonitor<KvLinkOptions>>().Get(name ?? Options.DefaultName);
        var store = name is null ? sp.GetRequiredService<IKvCacheStore>() : sp.GetRequiredKeyedService<IKvCacheStore>(name);
        var logger = sp.GetService<ILoggerFactory>()?.CreateLogger(LoggerCategory);
        string engineName = name ?? "default";
        if (logger is not null) KvLinkLog.Loading(logger, engineName, options.ModelPath!);
        var diagnostics = new KvLinkDiagnostics { Logger = logger, Metrics = sp.GetRequiredService<KvLinkMetrics>(), Name = engineName };
        // Loading is synchronous CPU/IO work run on the thread pool; DI factories cannot be async.
        return KvLinkEngine.LoadAsync(options.ModelPath!, options, store, diagnostics).GetAwaiter().GetResult();
    }
}
