using KVLink.Core.Engine;
using KVLink.Core.Hosting;

namespace KVLink.Core.Cuda;

/// <summary><c>UseCuda()</c> for <see cref="KvLinkOptions"/> and for the DI builder.</summary>
public static class KvLinkCudaExtensions
{
    /// <summary>
    /// Runs the engine on CUDA: sets <see cref="KvLinkOptions.Device"/> to <c>cuda:N</c>, bf16 by default, and pinned host
    /// staging for caches read from CPU stores. Without a CUDA runtime, see <see cref="KvLinkCudaOptions.FallbackToCpu"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative <see cref="KvLinkCudaOptions.DeviceIndex"/>.</exception>
    public static KvLinkOptions UseCuda(this KvLinkOptions options, Action<KvLinkCudaOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var cuda = new KvLinkCudaOptions();
        configure?.Invoke(cuda);
        if (cuda.DeviceIndex < 0)
            throw new ArgumentOutOfRangeException(nameof(KvLinkCudaOptions.DeviceIndex), cuda.DeviceIndex, "KvLinkCudaOptions.DeviceIndex must be >= 0.");

        if (cuda.FallbackToCpu && !CudaDevice.IsAvailable)
        {
            options.Device = "cpu";
            options.CacheTransfer = null;
            return options;
        }
        options.Device = $"cuda:{cuda.DeviceIndex}";
        if (cuda.BFloat16) options.DType = ComputeDType.BFloat16;
        options.CacheTransfer = cuda.PinnedHostStaging ? new PinnedHostStagingTransfer().ToDevice : null;
        return options;
    }

    /// <summary>Applies <see cref="UseCuda(KvLinkOptions, Action{KvLinkCudaOptions}?)"/> to this engine's options (after earlier configuration).</summary>
    public static KvLinkBuilder UseCuda(this KvLinkBuilder builder, Action<KvLinkCudaOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Configure(o => o.UseCuda(configure));
    }
}
