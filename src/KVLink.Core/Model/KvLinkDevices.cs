using System.Globalization;

namespace KVLink.Core.Model;

/// <summary>Parses <see cref="Engine.KvLinkOptions.Device"/> and checks a CUDA runtime is present before loading on it.</summary>
internal static class KvLinkDevices
{
    /// <summary>The message shown when CUDA is requested but TorchSharp has no CUDA runtime.</summary>
    internal static string MissingCudaRuntime(string device) =>
        $"Device '{device}' was requested, but TorchSharp found no CUDA runtime in this process. Add the LibTorch CUDA runtime package to the application: " +
        "TorchSharp-cuda-linux on Linux or TorchSharp-cuda-windows on Windows (same version as TorchSharp), and check the NVIDIA driver; " +
        "or leave Device unset to run on the CPU with TorchSharp-cpu.";

    public static bool IsValid(string device) => TryParse(device, out _, out _);

    public static bool TryParse(string device, out bool cuda, out int index)
    {
        cuda = false; index = -1;
        string d = device.Trim().ToLowerInvariant();
        if (d == "cpu") return true;
        if (d == "cuda") { cuda = true; return true; }
        if (d.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(d.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out index))
        {
            cuda = true;
            return true;
        }
        return false;
    }

    /// <summary>The TorchSharp device for <paramref name="device"/>; null for the CPU default.</summary>
    /// <exception cref="InvalidOperationException">CUDA requested without a CUDA runtime, or an index past the device count.</exception>
    public static TorchSharp.torch.Device? Resolve(string? device)
    {
        if (device is null || !TryParse(device, out bool cuda, out int index) || !cuda) return null;
        Native.TorchSharpLoader.EnsureLoaded();
        bool available;
        try { available = TorchSharp.torch.cuda.is_available(); }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException) { available = false; }
        if (!available) throw new InvalidOperationException(MissingCudaRuntime(device));
        int count = TorchSharp.torch.cuda.device_count();
        if (index >= count)
            throw new InvalidOperationException($"Device '{device}' was requested, but only {count} CUDA device(s) are present (indices 0..{count - 1}).");
        return new TorchSharp.torch.Device(device.Trim().ToLowerInvariant());
    }
}
