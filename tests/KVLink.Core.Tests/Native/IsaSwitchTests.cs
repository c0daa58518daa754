using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using KVLink.Core.Model;

namespace KVLink.Core.Tests.Native;

/// <summary>
/// The switches .ci/run's fallback passes set really take effect: .NET's ISA switches lower the decode kernel to the
/// next width (a switch with a wrong name is silently ignored: .NET 10 reads <c>DOTNET_EnableAVX512</c>, and no longer
/// <c>DOTNET_EnableAVX512F</c>), and <c>ATEN_CPU_CAPABILITY</c> lowers LibTorch's own kernels. These run only where
/// the switch is set; the last one reads LibTorch's capability everywhere, so the reading itself is checked.
/// </summary>
public class IsaSwitchTests
{
    [EnvironmentFact("DOTNET_EnableAVX512", "0")]
    public void With_AVX512_switched_off_the_kernel_is_the_AVX2_one_where_the_hardware_has_AVX2_and_FMA()
    {
        Assert.False(Vector512.IsHardwareAccelerated);
        Assert.False(Avx512F.IsSupported);
        Assert.NotEqual(DecodeKernel.Vector512, DecodeGemv.Detected);
        Assert.DoesNotContain("512", DecodeGemv.KernelName);
        if (HardwareHasAvx2AndFma && Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") != "0")
            Assert.Equal("Vector256 (AVX2+FMA)", DecodeGemv.KernelName);
    }

    [EnvironmentFact("DOTNET_EnableAVX2", "0")]
    public void With_AVX2_switched_off_no_256_or_512_bit_kernel_runs()
    {
        Assert.False(Vector256.IsHardwareAccelerated);
        Assert.False(Vector512.IsHardwareAccelerated);
        Assert.False(Avx2.IsSupported);
        Assert.True(DecodeGemv.Detected is DecodeKernel.Vector128 or DecodeKernel.Scalar, $"kernel {DecodeGemv.KernelName}");
        // On x64, .NET 10 switches FMA off with AVX2: the scalar loops, so int8 decoding is refused and bf16 stays with LibTorch.
        if (X86Base.IsSupported && !Fma.IsSupported) Assert.Equal("scalar", DecodeGemv.KernelName);
    }

    [EnvironmentFact("ATEN_CPU_CAPABILITY")]
    public void ATEN_CPU_CAPABILITY_sets_the_capability_LibTorchs_kernels_dispatch_to()
    {
        string? capability = LibTorchCapability.Read();
        if (capability is null && (!OperatingSystem.IsLinux() || !X86Base.IsSupported)) return; // the symbol is read on Linux x64 only
        Assert.Equal(Environment.GetEnvironmentVariable("ATEN_CPU_CAPABILITY")!.ToUpperInvariant(), capability);
    }

    [LinuxX64Fact]
    public void LibTorch_reports_the_capability_its_kernels_dispatch_to()
    {
        string? capability = LibTorchCapability.Read();
        Assert.NotNull(capability);
        Assert.Contains(capability, new[] { "DEFAULT", "AVX2", "AVX512" });
        // Without the switch, LibTorch never dispatches to a capability the hardware lacks.
        if (Environment.GetEnvironmentVariable("ATEN_CPU_CAPABILITY") is null && !HardwareHasAvx2AndFma) Assert.Equal("DEFAULT", capability);
    }

    /// <summary>What the processor itself reports (CPUID), whatever .NET's switches say: AVX2 (leaf 7 EBX bit 5) and FMA (leaf 1 ECX bit 12).</summary>
    private static bool HardwareHasAvx2AndFma =>
        X86Base.IsSupported && (X86Base.CpuId(7, 0).Ebx & (1 << 5)) != 0 && (X86Base.CpuId(1, 0).Ecx & (1 << 12)) != 0;
}
