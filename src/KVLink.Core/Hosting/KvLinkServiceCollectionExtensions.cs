using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using System.Diagnostics.Metrics;

namespace KVLink.Core.Hosting;

/// <summary>
/// Registers KVLink engines: <see cref="KvLinkEngine"/>, its <see cref="IKvCacheStore"/> (an in-memory store unless one is
/// registered or chosen with <see cref="KvLinkBuilder.UseStore(Func{IServiceProvider, IKvCacheStore})"/>) and an
/// <see cref="IChatClient"/> (<see cref="KvLinkChatExtensions.AsIChatClient"/>). Options are validated, every failure
/// at once, when first used and at host start (<c>ValidateOnStart</c>); with <see cref="KvLinkOptions.LoadOnStart"/> (the
/// default) a hosted service loads the model when the host starts. Metrics go to the container's <see cref="IMeterFactory"/>.
/// </summary>
// AddKvLink(Action? = null) beside AddKvLink(IConfiguration) is the Microsoft.Extensions shape (AddMemoryCache,
// AddStackExchangeRedisCache); the overloads differ in the parameter's type, so RS0027's ambiguity cannot arise.
#pragma warning disable RS0027
public static class KvLinkServiceCollectionExtensions
{
    /// <summary>The logger category of engines created by the container.</summary>
    public const string LoggerCategory = "KVLink.Core.Engine";

    /// <summary>The content type of what <see cref="WriteKvLinkJsonAsync"/> writes.</summary>
    public const string HealthContentType = KvLinkHealthResponse.ContentType;

    /// <summary>Registers the default KVLink engine configured by <paramref name="configure"/> (which must set <see cref="KvLinkOptions.ModelPath"/>).</summary>
    public static KvLinkBuilder AddKvLink(this IServiceCollection services, Action<KvLinkOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var builder = Register(services, null, null);
        if (configure is not null) builder.Configure(configure);
        return builder;
    }

    /// <summary>
    /// Registers the default KVLink engine bound to <paramref name="configuration"/> (e.g. the "KvLink" section: ModelPath,
    /// LinkTokens, Mode, DType, PrecomputeSlots, Device, LoadOnStart, Generation:MaxNewTokens...). Unknown keys are errors, so
    /// typos surface; validation failures name the keys under the section's path (e.g. <c>KvLink:Generation:MaxNewTokens</c>).
    /// </summary>
    public static KvLinkBuilder AddKvLink(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        return Register(services, null, configuration).Configure(o => Bind(configuration, o));
    }

    /// <summary>Registers a KVLink engine under <paramref name="name"/> (keyed services and named options), side by side with others.</summary>
    public static KvLinkBuilder AddKeyedKvLink(this IServiceCollection services, string name, Action<KvLinkOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var builder = Register(services, name, null);
        if (configure is not null) builder.Configure(configure);
        return builder;
    }

    /// <summary>Registers a KVLink engine under <paramref name="name"/>, bound to <paramref name="configuration"/>.</summary>
    public static KvLinkBuilder AddKeyedKvLink(this IServiceCollection services, string name, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(configuration);
        return Register(services, name, configuration).Configure(o => Bind(configuration, o));
    }

    /// <summary>
    /// Adds a health check of the engine registered under <paramref name="engineName"/> (null: the default engine): unhealthy
    /// (<paramref name="failureStatus"/>) while its model is not loaded or failed to load, or while its store cannot be reached;
    /// the data carries the model, the queue length and the store's reachability. Map it with
    /// <c>app.MapHealthChecks("/health")</c>.
    /// </summary>
    /// <param name="builder">The health checks builder (<c>services.AddHealthChecks()</c>).</param>
    /// <param name="engineName">The engine's key, or null for the default engine.</param>
    /// <param name="name">The check's name; defaults to "kvlink" (or "kvlink-{engineName}").</param>
    /// <param name="failureStatus">The status reported when unhealthy; null reports <see cref="HealthStatus.Unhealthy"/>.</param>
    /// <param name="tags">Tags to filter checks by (e.g. "ready").</param>
    public static IHealthChecksBuilder AddKvLinkHealthCheck(this IHealthChecksBuilder builder, string? engineName = null, string? name = null,
        HealthStatus? failureStatus = null, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Add(new HealthCheckRegistration(name ?? (engineName is null ? "kvlink" : $"kvlink-{engineName}"), sp =>
            new KvLinkHealthCheck(KvLinkRegistration.Find(sp.GetServices<KvLinkRegistration>(), engineName)
                ?? throw new InvalidOperationException(engineName is null
                    ? "AddKvLinkHealthCheck(): no default KVLink engine is registered; call services.AddKvLink(...)."
                    : $"AddKvLinkHealthCheck(\"{engineName}\"): no KVLink engine is registered under that key; call services.AddKeyedKvLink(\"{engineName}\", ...).")),
            failureStatus, tags));
    }

    /// <summary>
    /// Writes <paramref name="report"/> to <paramref name="stream"/> as one JSON object (UTF-8, <see cref="HealthContentType"/>)
    /// with every check's data (for KVLink's check: engine, model, loaded, queue length, store, reachability, entries), where
    /// ASP.NET Core's default writer prints only "Healthy". Wire it as the health endpoint's response writer (docs/observability.md):
    /// <c>ResponseWriter = (c, r) =&gt; { c.Response.ContentType = KvLinkServiceCollectionExtensions.HealthContentType; return r.WriteKvLinkJsonAsync(c.Response.Body, c.RequestAborted); }</c>.
    /// Shape: <c>{"status":"Healthy","duration_ms":1.2,"checks":{"kvlink":{"status":"Healthy","description":"...","duration_ms":1.1,"data":{...}}}}</c>.
    /// Exceptions are not written (their messages may hold paths); a check's description says what failed.
    /// </summary>
    public static Task WriteKvLinkJsonAsync(this HealthReport report, Stream stream, CancellationToken cancellationToken = default) =>
        KvLinkHealthResponse.WriteJsonAsync(stream, report, cancellationToken);

    private static void Bind(IConfiguration configuration, KvLinkOptions options) =>
        configuration.Bind(options, b => b.ErrorOnUnknownConfiguration = true);

    private static KvLinkBuilder Register(IServiceCollection services, string? name, IConfiguration? configuration)
    {
        var builder = new KvLinkBuilder(services, name);
        var registration = services.Where(d => d.ServiceType == typeof(KvLinkRegistration) && d.ImplementationInstance is KvLinkRegistration r && r.Name == name)
            .Select(d => (KvLinkRegistration)d.ImplementationInstance!).LastOrDefault();
        if (registration is null)
        {
            registration = new KvLinkRegistration(name);
            services.AddSingleton(registration);
        }
        if (configuration is IConfigurationSection section) registration.ConfigurationPath = section.Path;

        services.AddOptions<KvLinkOptions>(builder.OptionsName).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<KvLinkOptions>, KvLinkOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<KvLinkOptions>, KvLinkHostDefaults>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, KvLinkEngineLoader>());

        if (name is null)
        {
            services.TryAddSingleton<IKvCacheStore>(_ => new MemoryKvCacheStore());
            services.TryAddSingleton(sp => CreateEngine(sp, registration));
            services.TryAddSingleton<IChatClient>(sp => new KvLinkChatClient(sp.GetRequiredService<KvLinkEngine>(), sp.GetService<TimeProvider>()));
        }
        else
        {
            services.TryAddKeyedSingleton<IKvCacheStore>(name, (_, _) => new MemoryKvCacheStore());
            services.TryAddKeyedSingleton(name, (sp, _) => CreateEngine(sp, registration));
            services.TryAddKeyedSingleton<IChatClient>(name, (sp, _) => new KvLinkChatClient(sp.GetRequiredKeyedService<KvLinkEngine>(name), sp.GetService<TimeProvider>()));
        }
        return builder;
    }

    private static KvLinkEngine CreateEngine(IServiceProvider sp, KvLinkRegistration registration)
    {
        try
        {
            // Get() runs the validators: an invalid configuration fails here with OptionsValidationException.
            var options = sp.GetRequiredService<IOptionsMonitor<KvLinkOptions>>().Get(registration.OptionsName);
            var store = registration.ResolveStore(sp);
            var logger = sp.GetService<ILoggerFactory>()?.CreateLogger(LoggerCategory);
            string engineName = registration.Name ?? "default";
            if (logger is not null) KvLinkLog.Loading(logger, engineName, options.ModelPath!);
            // A missing LibTorch runtime fails here with a message naming the package to add, not deep inside TorchSharp.
            Native.TorchSharpLoader.EnsureRuntime();
            var diagnostics = new KvLinkDiagnostics { Logger = logger, MeterFactory = sp.GetService<IMeterFactory>(), Name = engineName };
            // Loading is synchronous CPU/IO work run on the thread pool; DI factories cannot be async.
            var engine = KvLinkEngine.LoadAsync(options.ModelPath!, options, store, diagnostics).GetAwaiter().GetResult();
            registration.Loaded(engine);
            return engine;
        }
        catch (Exception e)
        {
            registration.Failed(e);
            throw;
        }
    }
}
#pragma warning restore RS0027
