using KVLink.Core.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace KVLink.Core.Hosting;

/// <summary>
/// What a registered engine's options take from the host's container, after every other configuration:
/// <list type="bullet">
/// <item>a relative <see cref="KvLinkOptions.ModelPath"/> resolves against the host's content root
/// (<see cref="IHostEnvironment.ContentRootPath"/>), or the current directory where there is no host;</item>
/// <item>the container's <see cref="TimeProvider"/>, where the host registered one, is the clock of the engine's scheduler
/// (how long a precompute has waited, <see cref="KvLinkOptions.PrecomputeMaxWait"/>), as the chat client already gets it:
/// a host that swaps the clock (a fake one in its tests) swaps it everywhere.</item>
/// </list>
/// </summary>
internal sealed class KvLinkHostDefaults(IServiceProvider services) : IPostConfigureOptions<KvLinkOptions>
{
    public void PostConfigure(string? name, KvLinkOptions options)
    {
        if (!string.IsNullOrWhiteSpace(options.ModelPath) && !Path.IsPathFullyQualified(options.ModelPath))
        {
            string root = services.GetService<IHostEnvironment>()?.ContentRootPath is { Length: > 0 } contentRoot ? contentRoot : Directory.GetCurrentDirectory();
            options.ModelPath = Path.GetFullPath(options.ModelPath, root);
        }
        if (services.GetService<TimeProvider>() is { } time) options.TimeProvider = time;
    }
}
