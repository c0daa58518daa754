using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Training;

/// <summary>
/// The training dtype that is fast on this CPU: BFloat16 where the cores multiply bf16 natively (AVX512_BF16 or
/// AMX-BF16), Float32 elsewhere (there bf16 GEMMs are emulated and slower than fp32, and fp32 also keeps every update).
/// </summary>
public static class TrainingComputeType
{
    /// <summary>True when the CPU tier computes bf16 in hardware (AVX512_BF16 or AMX-BF16 over an AVX-512 view, or ARM64 BF16): <c>CpuCapabilities</c>.</summary>
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

    // The CPU tier's own answer (CPUID's AVX512_BF16 / AMX-BF16 over an AVX-512 view, or ARM's BF16), so training and
    // the engine's ComputeDType.Auto agree on what "native bf16" means.
    private static bool Probe() => CpuCapabilities.Current.Tier.ComputesBf16Natively();
}
