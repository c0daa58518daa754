using KVLink.Core.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace KVLink.Core.Hosting;

/// <summary>One engine registered with <c>AddKvLink</c> / <c>AddKeyedKvLink</c>: its key, where it was bound from, and whether it has loaded.</summary>
internal sealed class KvLinkRegistration(string? name)
{
    private volatile KvLinkEngine? _engine;
    private volatile Exception? _loadError;

    /// <summary>The DI key; null for the default engine.</summary>
    public string? Name { get; } = name;

    /// <summary>The options name (<see cref="Options.DefaultName"/> for the default engine).</summary>
    public string OptionsName => Name ?? Options.DefaultName;

    /// <summary>The configuration section the options were bound from (e.g. "KvLink"), for validation messages; null when configured in code.</summary>
    public string? ConfigurationPath { get; set; }

    /// <summary>The engine once the container has loaded it.</summary>
    public KvLinkEngine? Engine => _engine;

    /// <summary>Why loading failed, when it did.</summary>
    public Exception? LoadError => _loadError;

    public void Loaded(KvLinkEngine engine) => (_engine, _loadError) = (engine, null);

    public void Failed(Exception error) => _loadError = error;

    public KvLinkEngine Resolve(IServiceProvider services) =>
        Name is null ? services.GetRequiredService<KvLinkEngine>() : services.GetRequiredKeyedService<KvLinkEngine>(Name);

    public Caching.IKvCacheStore ResolveStore(IServiceProvider services) =>
        Name is null ? services.GetRequiredService<Caching.IKvCacheStore>() : services.GetRequiredKeyedService<Caching.IKvCacheStore>(Name);

    public static KvLinkRegistration? Find(IEnumerable<KvLinkRegistration> registrations, string? name) =>
        registrations.LastOrDefault(r => r.Name == name);
}
