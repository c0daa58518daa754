using KVLink.Core.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace KVLink.Core.Hosting;

/// <summary>
/// Gives a registered engine the container's <see cref="TimeProvider"/>, where the host registered one, as the clock of
/// its scheduler (how long a precompute has waited, <see cref="KvLinkOptions.PrecomputeMaxWait"/>), as the chat client
/// already gets it: a host that swaps the clock (a fake one in its tests) swaps it everywhere.
/// </summary>
internal sealed class KvLinkHostClock(IServiceProvider services) : IPostConfigureOptions<KvLinkOptions>
{
    public void PostConfigure(string? name, KvLinkOptions options)
    {
        if (services.GetService<TimeProvider>() is { } time) options.TimeProvider = time;
    }
}
