using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Training;

public sealed class TrainingComputeTypeTests
{
    [Fact]
    public void NativeBFloat16AgreesWithTheKernelsCpuFlags()
    {
        // The kernel reads the same CPUID bits; whatever CPU runs the test, both must agree.
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/cpuinfo")) return;
        var flags = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal));
        if (flags is null) return; // not x86 (no flags line)
        var set = flags[(flags.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        // AVX512_BF16 counts only while .NET uses AVX-512 (DOTNET_EnableAVX512F=0 switches it off, as CI may).
        bool expected = (set.Contains("avx512_bf16") && System.Runtime.Intrinsics.X86.Avx512F.IsSupported) || set.Contains("amx_bf16");
        Assert.Equal(expected, TrainingComputeType.HasNativeBFloat16);
        Assert.Equal(expected ? ScalarType.BFloat16 : ScalarType.Float32, TrainingComputeType.Auto);
    }

    [Fact]
    public void ParseReadsTheOptionAndNamesABadValue()
    {
        Assert.Equal(TrainingComputeType.Auto, TrainingComputeType.Parse(null));
        Assert.Equal(TrainingComputeType.Auto, TrainingComputeType.Parse("auto"));
        Assert.Equal(ScalarType.Float32, TrainingComputeType.Parse("float32"));
        Assert.Equal(ScalarType.Float32, TrainingComputeType.Parse("FP32"));
        Assert.Equal(ScalarType.BFloat16, TrainingComputeType.Parse("bfloat16"));
        Assert.Equal(ScalarType.BFloat16, TrainingComputeType.Parse("bf16"));
        var e = Assert.Throws<ArgumentException>(() => TrainingComputeType.Parse("float16"));
        Assert.Contains("'float16'", e.Message);
    }
}
