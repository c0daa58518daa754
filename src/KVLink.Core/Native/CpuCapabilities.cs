using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace KVLink.Core.Native;

/// <summary>
/// What the CPU of this process can compute, detected once: its <see cref="CpuTier"/>, its model name, and the bf16 units
/// the hardware has whether or not the tier counts them. Detection reads .NET's intrinsics flags, CPUID leaf 7 (x64:
/// sub-leaf 1 EAX bit 5 is AVX512_BF16, sub-leaf 0 EDX bit 22 is AMX-BF16; .NET has no flag for either) and, on Linux
/// ARM64, the kernel's feature list (<c>bf16</c>), which .NET does not expose either.
/// </summary>
/// <param name="Tier">The tier in .NET's view (see <see cref="CpuTier"/>).</param>
/// <param name="Model">The CPU's model name (/proc/cpuinfo on Linux, CPUID's brand string on x64 elsewhere, else the architecture).</param>
/// <param name="HardwareAvx512Bf16">CPUID reports AVX512_BF16 (even where .NET's AVX-512 is switched off).</param>
/// <param name="HardwareAmxBf16">CPUID reports AMX-BF16 (the OS must also enable the tiles; LibTorch asks Linux for them).</param>
/// <param name="HardwareArmBf16">The ARM64 kernel lists the BF16 extension.</param>
internal sealed record CpuCapabilities(CpuTier Tier, string Model, bool HardwareAvx512Bf16, bool HardwareAmxBf16, bool HardwareArmBf16)
{
    private static readonly Lazy<CpuCapabilities> s_current = new(Detect);

    /// <summary>This process's CPU (detected on first use).</summary>
    public static CpuCapabilities Current => s_current.Value;

    /// <summary>Detects the capabilities of the CPU this process runs on.</summary>
    public static CpuCapabilities Detect()
    {
        bool avx512Bf16 = false, amxBf16 = false;
        if (X86Base.IsSupported)
        {
            uint maxLeaf = (uint)X86Base.CpuId(0, 0).Eax;
            if (maxLeaf >= 7)
            {
                var leaf7 = X86Base.CpuId(7, 0);
                amxBf16 = (leaf7.Edx & (1 << 22)) != 0;
                if ((uint)leaf7.Eax >= 1) avx512Bf16 = (X86Base.CpuId(7, 1).Eax & (1 << 5)) != 0;
            }
        }
        bool armBf16 = AdvSimd.Arm64.IsSupported && LinuxCpuInfoField("Features") is { } features
            && features.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("bf16");
        var tier = TierOf(Avx512F.IsSupported, Avx2.IsSupported, Fma.IsSupported, avx512Bf16, amxBf16, AdvSimd.Arm64.IsSupported, armBf16);
        return new CpuCapabilities(tier, ModelName(), avx512Bf16, amxBf16, armBf16);
    }

    /// <summary>
    /// The tier from .NET's flags and the hardware's bf16 bits: the bf16 units count only on top of an AVX-512F view, so
    /// switching .NET's AVX-512 off (<c>DOTNET_EnableAVX512=0</c> on .NET 10) gives the AVX2 tier an AVX2-only machine would have.
    /// </summary>
    public static CpuTier TierOf(bool avx512F, bool avx2, bool fma, bool avx512Bf16, bool amxBf16, bool advSimdArm64, bool armBf16)
    {
        if (avx512F && amxBf16) return CpuTier.Amx;
        if (avx512F && avx512Bf16) return CpuTier.Avx512Bf16;
        if (avx512F) return CpuTier.Avx512F;
        if (avx2 && fma) return CpuTier.Avx2Fma;
        if (advSimdArm64) return armBf16 ? CpuTier.Arm64AdvSimdBf16 : CpuTier.Arm64AdvSimd;
        return CpuTier.Baseline;
    }

    private static string ModelName()
    {
        if (LinuxCpuInfoField("model name") is { Length: > 0 } linux) return linux;
        if (X86Base.IsSupported && (uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax >= 0x80000004)
        {
            var brand = new StringBuilder(48);
            for (int leaf = unchecked((int)0x80000002); leaf <= unchecked((int)0x80000004); leaf++)
            {
                var (a, b, c, d) = X86Base.CpuId(leaf, 0);
                foreach (int r in (int[])[a, b, c, d])
                    for (int i = 0; i < 4; i++) brand.Append((char)((r >> (8 * i)) & 0xFF));
            }
            string name = brand.ToString().TrimEnd('\0').Trim();
            if (name.Length > 0) return name;
        }
        return $"{RuntimeInformation.ProcessArchitecture} CPU";
    }

    /// <summary>The first value of <paramref name="field"/> in /proc/cpuinfo (Linux), or null.</summary>
    private static string? LinuxCpuInfoField(string field)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon > 0 && line.AsSpan(0, colon).Trim().SequenceEqual(field)) return line[(colon + 1)..].Trim();
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return null;
    }
}
