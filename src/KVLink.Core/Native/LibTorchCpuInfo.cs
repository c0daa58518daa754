using System.Runtime.InteropServices;
using System.Text;

namespace KVLink.Core.Native;

/// <summary>
/// What LibTorch itself computes with on the CPU, which .NET's flags do not decide: ATen's vector capability (its own
/// kernels: DEFAULT, AVX2, AVX512; capped by <c>ATEN_CPU_CAPABILITY</c>) and the overrides of oneDNN (bf16 GEMMs;
/// <c>ONEDNN_MAX_CPU_ISA</c>) and MKL (float32 GEMMs; <c>MKL_ENABLE_INSTRUCTIONS</c>). TorchSharp wraps none of
/// <c>torch.__config__</c> or <c>torch.backends.cpu</c>; ATen's capability is read from LibTorch's exported
/// <c>at::get_cpu_capability()</c> on Linux x64 (the one ABI we can call it through), and oneDNN's ISA is not observable
/// from outside it, so for oneDNN and MKL only an override is reported.
/// </summary>
/// <param name="AtenCapability">ATen's capability as LibTorch reports it ("AVX512", "AVX2", "DEFAULT"), or null where it cannot be read.</param>
/// <param name="AtenOverride">The <c>ATEN_CPU_CAPABILITY</c> setting, or null.</param>
/// <param name="OneDnnOverride">The <c>ONEDNN_MAX_CPU_ISA</c> (or legacy <c>DNNL_MAX_CPU_ISA</c>) setting, or null.</param>
/// <param name="MklOverride">The <c>MKL_ENABLE_INSTRUCTIONS</c> setting, or null.</param>
internal sealed record LibTorchCpuInfo(string? AtenCapability, string? AtenOverride, string? OneDnnOverride, string? MklOverride)
{
    private static readonly Lazy<LibTorchCpuInfo> s_current = new(Detect);

    /// <summary>This process's LibTorch (loads TorchSharp's runtime on first use).</summary>
    public static LibTorchCpuInfo Current => s_current.Value;

    /// <summary>ATen's capability as observed, else its override marked as such, else "unknown".</summary>
    public string Aten => AtenCapability ?? (AtenOverride is { } o ? $"{o} (ATEN_CPU_CAPABILITY, not observable)" : "unknown (not observable)");

    /// <summary>oneDNN's ISA cap: the override when set, else "max" (oneDNN picks the best the CPU has; not observable).</summary>
    public string OneDnn => OneDnnOverride is { } o ? $"{o} (ONEDNN_MAX_CPU_ISA)" : "max (no override; not observable)";

    /// <summary>Whether LibTorch was told to use less than the CPU has (any of the three overrides is set).</summary>
    public bool Capped => AtenOverride is not null || OneDnnOverride is not null || MklOverride is not null;

    private static LibTorchCpuInfo Detect()
    {
        static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        return new LibTorchCpuInfo(ReadAtenCapability(), Env("ATEN_CPU_CAPABILITY"), Env("ONEDNN_MAX_CPU_ISA") ?? Env("DNNL_MAX_CPU_ISA"),
            Env("MKL_ENABLE_INSTRUCTIONS"));
    }

    /// <summary>
    /// Calls <c>std::string at::get_cpu_capability()</c> (libstdc++'s C++11 string ABI: returned through a hidden pointer
    /// to a 32-byte {data, size, inline buffer}). The names are a few characters, so the string stays in its inline buffer;
    /// a longer one's heap block is left to the process (read once).
    /// </summary>
    private static unsafe string? ReadAtenCapability()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return null;
        try
        {
            TorchSharpLoader.EnsureLoaded();
            _ = TorchSharp.torch.get_num_threads(); // LibTorch's libraries are loaded from here on
            if (!NativeLibrary.TryLoad("libtorch_cpu.so", out var lib)
                || !NativeLibrary.TryGetExport(lib, "_ZN2at18get_cpu_capabilityB5cxx11Ev", out var export)) return null;
            byte* s = stackalloc byte[32];
            ((delegate* unmanaged<byte*, byte*>)export)(s);
            byte* data = *(byte**)s;
            long length = *(long*)(s + 8);
            if (data == null || length is < 0 or > 64) return null;
            return Encoding.ASCII.GetString(data, (int)length);
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or BadImageFormatException)
        {
            return null;
        }
    }
}
