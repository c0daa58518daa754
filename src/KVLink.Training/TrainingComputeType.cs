using System.Runtime.Intrinsics.X86;
using static TorchSharp.torch;

namespace KVLink.Training;

/// <summary>
/// The training dtype that is fast on this CPU: BFloat16 where the cores multiply bf16 natively (AVX512_BF16 or
/// AMX-BF16), Float32 elsewhere (there bf16 GEMMs are emulated and slower than fp32, and fp32 also keeps every update).
/// </summary>
/// <remarks>
/// A stop-gap probe until the shared CPU-tier type (<c>CpuCapabilities</c>, issue "CPU tier") lands in KVLink.Core:
/// <see cref="HasNativeBFloat16"/> is then that type's bf16 answer, and this class only maps it to a dtype.
/// </remarks>
public static class TrainingComputeType
{
    /// <summary>True when the CPU has AVX512_BF16 (CPUID leaf 7 sub-leaf 1, EAX bit 5) or AMX-BF16 (leaf 7, EDX bit 22).</summary>
    public static bool HasNativeBFloat16 { get; } = Probe();

    /// <summary>BFloat16 with <see cref="HasNativeBFloat16"/>, Float32 otherwise.</summary>
    public static ScalarType Auto => HasNativeBFloat16 ? ScalarType.BFloat16 : ScalarType.Float32;

    /// <summary>
    /// Parses a dtype option: <c>auto</c> (<see cref="Auto"/>), <c>float32</c>/<c>fp32</c> or <c>bfloat16</c>/<c>bf16</c>.
    /// </summary>
    /// <exception cref="ArgumentException">Any other value, named in the message.</exception>
    public static ScalarType Parse(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => Auto,
        "float32" or "fp32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        _ => throw new ArgumentException($"'{value}' is not a training dtype: use auto, float32 or bfloat16.", nameof(value)),
    };

    private static bool Probe()
    {
        // Avx512F.IsSupported also says the OS saves the AVX-512 state; AMX needs its own OS permission, which
        // LibTorch requests itself, so the CPUID bit is the question here.
        if (!X86Base.IsSupported) return false;
        var (_, _, _, edx7) = X86Base.CpuId(7, 0);
        bool amxBf16 = (edx7 & (1 << 22)) != 0;
        var (eax71, _, _, _) = X86Base.CpuId(7, 1);
        bool avx512Bf16 = Avx512F.IsSupported && (eax71 & (1 << 5)) != 0;
        return avx512Bf16 || amxBf16;
    }
}
