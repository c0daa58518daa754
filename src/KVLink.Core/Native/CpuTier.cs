namespace KVLink.Core.Native;

/// <summary>
/// The widest compute the CPU offers this process, highest first. The x64 tiers follow .NET's view of the ISAs
/// (<c>DOTNET_EnableAVX512=0</c> lowers an AVX-512 machine to <see cref="Avx2Fma"/>; .NET 10 ignores the older <c>DOTNET_EnableAVX512F</c>), since they name what .NET code
/// such as the decode kernel can run; the bf16 units (AMX, AVX512_BF16), which .NET has no API for, come from CPUID and
/// count only on top of an AVX-512F view. LibTorch has its own knobs and is reported separately (<see cref="LibTorchCpuInfo"/>).
/// </summary>
internal enum CpuTier
{
    /// <summary>No vector ISA the kernels use (or .NET's were all switched off).</summary>
    Baseline,
    /// <summary>ARM64 with AdvSimd (NEON): Graviton, Apple silicon, Ampere.</summary>
    Arm64AdvSimd,
    /// <summary>ARM64 with AdvSimd and the BF16 extension (read from the kernel's feature list; .NET exposes no flag for it).</summary>
    Arm64AdvSimdBf16,
    /// <summary>x64 with AVX2 and FMA (Haswell and later, AMD Zen 1-3).</summary>
    Avx2Fma,
    /// <summary>x64 with AVX-512F but no bf16 dot products (Skylake-SP, Cascade Lake, Ice Lake).</summary>
    Avx512F,
    /// <summary>x64 with AVX512_BF16 (Cooper Lake, AMD Zen 4 and later): bf16 dot products in the vector units.</summary>
    Avx512Bf16,
    /// <summary>x64 with AMX-BF16 tile units (Sapphire Rapids and later): bf16 matrix products.</summary>
    Amx,
}

/// <summary>Names and properties of <see cref="CpuTier"/> values.</summary>
internal static class CpuTiers
{
    /// <summary>The tier's name in logs and health data, e.g. "AVX-512 BF16".</summary>
    public static string Name(this CpuTier tier) => tier switch
    {
        CpuTier.Amx => "AMX",
        CpuTier.Avx512Bf16 => "AVX-512 BF16",
        CpuTier.Avx512F => "AVX-512F",
        CpuTier.Avx2Fma => "AVX2+FMA",
        CpuTier.Arm64AdvSimdBf16 => "ARM64 AdvSimd+BF16",
        CpuTier.Arm64AdvSimd => "ARM64 AdvSimd",
        _ => "baseline",
    };

    /// <summary>Whether the CPU multiplies bf16 in hardware (matrix tiles or bf16 dot products), so bf16 GEMMs can beat float32.</summary>
    public static bool ComputesBf16Natively(this CpuTier tier) => tier is CpuTier.Amx or CpuTier.Avx512Bf16 or CpuTier.Arm64AdvSimdBf16;
}
