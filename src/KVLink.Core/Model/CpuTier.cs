using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace KVLink.Core.Model;

/// <summary>
/// The widest CPU tier this process runs its matrix kernels on, for reports: "amx", "avx512-bf16", "avx512", "avx2",
/// "arm64-neon" or "baseline". The vector widths come from what .NET reports for this process (so
/// <c>DOTNET_EnableAVX512F=0</c> is honoured); AMX and AVX-512 BF16, which .NET 10 has no intrinsics class for, from
/// CPUID leaf 7. Nothing dispatches on it.
/// </summary>
internal static class CpuTier
{
    public static string Current()
    {
        if (Avx512F.IsSupported && Avx512BW.IsSupported)
        {
            var (_, _, _, edx) = X86Base.CpuId(7, 0);
            if ((edx & (1 << 22)) != 0 && (edx & (1 << 24)) != 0) return "amx";   // AMX-BF16 and AMX-TILE
            var (eax, _, _, _) = X86Base.CpuId(7, 1);
            return (eax & (1 << 5)) != 0 ? "avx512-bf16" : "avx512";
        }
        if (Avx2.IsSupported && Fma.IsSupported) return "avx2";
        return AdvSimd.IsSupported ? "arm64-neon" : "baseline";
    }
}
