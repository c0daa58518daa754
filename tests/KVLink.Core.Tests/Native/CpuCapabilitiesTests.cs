using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;
using KVLink.Core.Native;

namespace KVLink.Core.Tests.Native;

/// <summary>The CPU tier agrees with .NET's ISA flags (whatever this machine is, and under the DOTNET_Enable* knobs), and LibTorch's capability is read.</summary>
public class CpuCapabilitiesTests
{
    [Fact]
    public void The_detected_tier_agrees_with_dotnets_isa_flags()
    {
        var cpu = CpuCapabilities.Current;
        Assert.False(string.IsNullOrWhiteSpace(cpu.Model));
        switch (cpu.Tier)
        {
            case CpuTier.Amx:
                Assert.True(Avx512F.IsSupported && cpu.HardwareAmxBf16);
                break;
            case CpuTier.Avx512Bf16:
                Assert.True(Avx512F.IsSupported && cpu.HardwareAvx512Bf16 && !cpu.HardwareAmxBf16);
                break;
            case CpuTier.Avx512F:
                Assert.True(Avx512F.IsSupported && !cpu.HardwareAvx512Bf16 && !cpu.HardwareAmxBf16);
                break;
            case CpuTier.Avx2Fma:
                // Under DOTNET_EnableAVX512=0 (.NET 10) an AVX-512 machine lands here, its bf16 units notwithstanding.
                Assert.True(!Avx512F.IsSupported && Avx2.IsSupported && Fma.IsSupported);
                break;
            case CpuTier.Arm64AdvSimdBf16:
                Assert.True(AdvSimd.Arm64.IsSupported && cpu.HardwareArmBf16);
                break;
            case CpuTier.Arm64AdvSimd:
                Assert.True(AdvSimd.Arm64.IsSupported && !cpu.HardwareArmBf16);
                break;
            default:
                Assert.False(Avx512F.IsSupported || (Avx2.IsSupported && Fma.IsSupported) || AdvSimd.Arm64.IsSupported);
                break;
        }
        Assert.Equal(cpu.Tier.ComputesBf16Natively(), cpu.Tier is CpuTier.Amx or CpuTier.Avx512Bf16 or CpuTier.Arm64AdvSimdBf16);
    }

    [Theory]
    [InlineData(true, true, true, true, true, false, false, "Amx")]
    [InlineData(true, true, true, true, false, false, false, "Avx512Bf16")]
    [InlineData(true, true, true, false, false, false, false, "Avx512F")]
    [InlineData(false, true, true, true, true, false, false, "Avx2Fma")] // AVX-512 switched off in .NET: the bf16 units do not count
    [InlineData(false, true, false, false, false, false, false, "Baseline")] // AVX2 without FMA
    [InlineData(false, false, false, false, false, true, true, "Arm64AdvSimdBf16")]
    [InlineData(false, false, false, false, false, true, false, "Arm64AdvSimd")]
    [InlineData(false, false, false, false, false, false, false, "Baseline")]
    public void The_tier_is_the_highest_that_dotnets_view_allows(bool avx512F, bool avx2, bool fma, bool avx512Bf16, bool amx, bool arm64, bool armBf16, string expected)
        => Assert.Equal(Enum.Parse<CpuTier>(expected), CpuCapabilities.TierOf(avx512F, avx2, fma, avx512Bf16, amx, arm64, armBf16));

    [Fact]
    public void LibTorchs_aten_capability_is_read_on_linux_x64_and_follows_its_override()
    {
        var info = LibTorchCpuInfo.Current;
        Assert.Equal(Environment.GetEnvironmentVariable("ATEN_CPU_CAPABILITY") is { Length: > 0 } v ? v : null, info.AtenOverride);
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64) return;
        Assert.Contains(info.AtenCapability, (string[])["DEFAULT", "AVX2", "AVX512"]);
        // ATen follows its override (e.g. ATEN_CPU_CAPABILITY=avx2 in the fallback pass): proof that the knob takes effect.
        if (info.AtenOverride is { } cap && cap.ToUpperInvariant() is "AVX2" or "DEFAULT") Assert.Equal(cap.ToUpperInvariant(), info.AtenCapability);
    }
}
