using KVLink.Core.Engine;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace KVLink.Core.Hosting;

/// <summary>
/// Loads every engine whose <see cref="KvLinkOptions.LoadOnStart"/> is set when the host starts, so a bad checkpoint or a
/// missing LibTorch runtime fails the host start (after <c>ValidateOnStart</c>'s checks) rather than the first request.
/// </summary>
internal sealed class KvLinkEngineLoader(IServiceProvider services, IEnumerable<KvLinkRegistration> registrations, IOptionsMonitor<KvLinkOptions> options)
    : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var registration in registrations.DistinctBy(r => r.Name))
        {
            if (!options.Get(registration.OptionsName).LoadOnStart) continue;
            // Loading is synchronous CPU/IO work (DI factories cannot be async): keep it off the caller's thread.
            await Task.Run(() => registration.Resolve(services), cancellationToken).ConfigureAwait(false);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
