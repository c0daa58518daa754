namespace KVLink.Core.Cuda;

/// <summary>
/// CUDA placement for KVLink.Core. This package reserves the seam; device kernels arrive in a later release.
/// </summary>
public static class CudaDevice
{
    /// <summary>True when TorchSharp reports a usable CUDA device in this process.</summary>
    public static bool IsAvailable
    {
        get
        {
            KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
            return TorchSharp.torch.cuda.is_available();
        }
    }
}
