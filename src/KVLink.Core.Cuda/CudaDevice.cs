namespace KVLink.Core.Cuda;

/// <summary>CUDA availability checks for KVLink.Core.</summary>
public static class CudaDevice
{
    /// <summary>The error text when no CUDA runtime is present; names the package to add.</summary>
    public const string MissingRuntimeMessage =
        "KVLink.Core.Cuda found no CUDA runtime: TorchSharp reports no usable CUDA device in this process. Add the LibTorch CUDA runtime package " +
        "matching your OS to the application — TorchSharp-cuda-linux (Linux) or TorchSharp-cuda-windows (Windows), same version as TorchSharp — " +
        "and check the NVIDIA driver (nvidia-smi). To run on the CPU instead, reference TorchSharp-cpu and drop UseCuda(), or set FallbackToCpu.";

    /// <summary>True when TorchSharp reports a usable CUDA device in this process (false, not an error, when no runtime is installed).</summary>
    public static bool IsAvailable
    {
        get
        {
            try
            {
                KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
                return TorchSharp.torch.cuda.is_available();
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or NotSupportedException or InvalidOperationException)
            {
                return false;
            }
        }
    }

    /// <summary>Number of CUDA devices (0 when no runtime is present).</summary>
    public static int DeviceCount => IsAvailable ? TorchSharp.torch.cuda.device_count() : 0;

    /// <summary>Throws a clear error unless CUDA device <paramref name="deviceIndex"/> can be used.</summary>
    /// <exception cref="InvalidOperationException">No CUDA runtime (the message names TorchSharp-cuda-linux / TorchSharp-cuda-windows), or no such device.</exception>
    public static void EnsureAvailable(int deviceIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(deviceIndex);
        if (!IsAvailable) throw new InvalidOperationException(MissingRuntimeMessage);
        int count = TorchSharp.torch.cuda.device_count();
        if (deviceIndex >= count)
            throw new InvalidOperationException($"CUDA device {deviceIndex} was requested, but only {count} device(s) are present (indices 0..{count - 1}).");
    }
}
