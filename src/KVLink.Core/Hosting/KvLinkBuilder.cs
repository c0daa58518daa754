using KVLink.Core.Caching;
using KVLink.Core.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace KVLink.Core.Hosting;

/// <summary>
/// Returned by <c>AddKvLink</c> / <c>AddKeyedKvLink</c> to refine one engine's registration: its options and its store.
/// </summary>
public sealed class KvLinkBuilder
{
    internal KvLinkBuilder(IServiceCollection services, string? name) => (Services, Name) = (services, name);

    /// <summary>The service collection.</summary>
    public IServiceCollection Services { get; }

    /// <summary>The engine's key (and named-options name) for keyed registrations; null for the default engine.</summary>
    public string? Name { get; }

    /// <summary>The name of this engine's <see cref="KvLinkOptions"/> in the options system.</summary>
    public string OptionsName => Name ?? Microsoft.Extensions.Options.Options.DefaultName;

    /// <summary>Adds a configuration step for this engine's options (runs after earlier ones).</summary>
    public KvLinkBuilder Configure(Action<KvLinkOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        Services.AddOptions<KvLinkOptions>(OptionsName).Configure(configure);
        return this;
    }

    /// <summary>Uses the store <paramref name="factory"/> creates for this engine, replacing the default in-memory store.</summary>
    public KvLinkBuilder UseStore(Func<IServiceProvider, IKvCacheStore> factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        if (Name is null)
        {
            Services.RemoveAll<IKvCacheStore>();
            Services.AddSingleton(factory);
        }
        else
        {
            Services.RemoveAllKeyed<IKvCacheStore>(Name);
            Services.AddKeyedSingleton<IKvCacheStore>(Name, (sp, _) => factory(sp));
        }
        return this;
    }

    /// <summary>Uses a <typeparamref name="TStore"/> (created by the container) as this engine's store.</summary>
    public KvLinkBuilder UseStore<TStore>() where TStore : class, IKvCacheStore =>
        UseStore(sp => ActivatorUtilities.CreateInstance<TStore>(sp));

    /// <summary>Uses an in-process <see cref="MemoryKvCacheStore"/> (the default). Its metrics are reported through the engine, as every store's are.</summary>
    public KvLinkBuilder UseMemoryStore() => UseStore(_ => new MemoryKvCacheStore());

    /// <summary>Sets <see cref="KvLinkOptions.LoadOnStart"/>: whether the host loads this engine's model when it starts (the default) or on first use.</summary>
    public KvLinkBuilder LoadOnStart(bool enabled = true) => Configure(o => o.LoadOnStart = enabled);
}
