using KVLink.Core.Engine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace KVLink.Core.Hosting;

/// <summary>
/// Resolves a relative <see cref="KvLinkOptions.ModelPath"/> against the host's content root
/// (<see cref="IHostEnvironment.ContentRootPath"/>), or the current directory where there is no host.
/// </summary>
internal sealed class KvLinkContentRoot(IServiceProvider services) : IPostConfigureOptions<KvLinkOptions>
{
    public void PostConfigure(string? name, KvLinkOptions options)
    {
        if (string.IsNullOrWhiteSpace(options.ModelPath) || Path.IsPathFullyQualified(options.ModelPath)) return;
        string root = services.GetService<IHostEnvironment>()?.ContentRootPath is { Length: > 0 } contentRoot ? contentRoot : Directory.GetCurrentDirectory();
        options.ModelPath = Path.GetFullPath(options.ModelPath, root);
    }
}
