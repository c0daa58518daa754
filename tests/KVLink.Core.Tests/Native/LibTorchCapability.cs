using System.Runtime.InteropServices;
using System.Text;

namespace KVLink.Core.Tests.Native;

/// <summary>
/// The CPU capability LibTorch's own kernels dispatch to (ATen's DEFAULT, AVX2, AVX512, ...), which
/// <c>ATEN_CPU_CAPABILITY</c> lowers: <c>at::get_cpu_capability()</c>, as <c>torch.backends.cpu.get_cpu_capability()</c>
/// reads it in Python. TorchSharp does not bind it, so it is called by its exported (Itanium-mangled) name; it returns
/// a libstdc++ <c>std::string</c> through a caller-provided buffer.
/// </summary>
internal static unsafe class LibTorchCapability
{
    /// <summary>The capability, or null where the symbol is not found (other platforms, other LibTorch builds).</summary>
    public static string? Read()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64) return null;
        _ = TorchSharp.torch.get_num_threads(); // LibTorch loaded
        if (!NativeLibrary.TryLoad("libtorch_cpu.so", out var lib)
            || !NativeLibrary.TryGetExport(lib, "_ZN2at18get_cpu_capabilityB5cxx11Ev", out var get)
            || !NativeLibrary.TryGetExport(lib, "_ZdlPv", out var delete)) return null; // operator delete, from its libstdc++
        // std::string (C++11 ABI): { char* data; size_t length; char local[16] }, data pointing at local when short.
        byte* result = stackalloc byte[32];
        ((delegate* unmanaged<byte*, byte*>)get)(result);
        byte* data = *(byte**)result;
        string text = Encoding.ASCII.GetString(data, checked((int)*(ulong*)(result + 8)));
        if (data != result + 16) ((delegate* unmanaged<byte*, void>)delete)(data);
        return text;
    }
}
