namespace KVLink.Core.Cuda;

/// <summary>CUDA settings applied by <see cref="KvLinkCudaExtensions.UseCuda(KVLink.Core.Engine.KvLinkOptions, Action{KvLinkCudaOptions}?)"/>.</summary>
public sealed class KvLinkCudaOptions
{
    /// <summary>CUDA device index (default 0): the model and every request run on <c>cuda:DeviceIndex</c>.</summary>
    public int DeviceIndex { get; set; }

    /// <summary>Use bfloat16 weights and caches (default true, the precision the KVLink checkpoints were trained in); false keeps <c>KvLinkOptions.DType</c>.</summary>
    public bool BFloat16 { get; set; } = true;

    /// <summary>Stage caches from CPU stores through pinned host memory and copy them asynchronously (default true).</summary>
    public bool PinnedHostStaging { get; set; } = true;

    /// <summary>
    /// When no CUDA runtime is present: true runs on the CPU instead (Device "cpu", no staging); false (default)
    /// leaves the CUDA device set so loading the engine fails with an error naming the runtime package to add.
    /// </summary>
    public bool FallbackToCpu { get; set; }
}
