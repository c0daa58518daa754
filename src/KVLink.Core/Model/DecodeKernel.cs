using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace KVLink.Core.Model;

/// <summary>Which body of <see cref="DecodeGemv"/> runs: a vector width with a fused multiply-add, or the scalar loops.</summary>
internal enum DecodeKernel
{
    /// <summary>No accelerated vector width with FMA: scalar loops (bf16 decode then stays with LibTorch; int8 decode is refused).</summary>
    Scalar,

    /// <summary>4 floats: ARM64 AdvSimd, or x86 with FMA where .NET accelerates no wider vectors.</summary>
    Vector128,

    /// <summary>8 floats: x86 AVX2 with FMA.</summary>
    Vector256,

    /// <summary>16 floats: x86 AVX-512F.</summary>
    Vector512,
}

/// <summary>The choice of <see cref="DecodeKernel"/>: the widest one this CPU (and .NET's ISA switches) serves, decided once.</summary>
internal static partial class DecodeGemv
{
    [ThreadStatic] private static DecodeKernel? t_forced;

    /// <summary>The kernel the CPU serves: the widest accelerated width with a fused multiply-add.</summary>
    public static DecodeKernel Detected { get; } =
        new[] { DecodeKernel.Vector512, DecodeKernel.Vector256, DecodeKernel.Vector128 }.FirstOrDefault(IsSupported, DecodeKernel.Scalar);

    /// <summary>The kernel this thread's products take: <see cref="Detected"/> unless a test or benchmark <see cref="Use"/>s a narrower one.</summary>
    public static DecodeKernel Kernel => t_forced ?? Detected;

    /// <summary>The detected kernel in words, as the load-time system-info line names it (e.g. "Vector256 (AVX2+FMA)").</summary>
    public static string KernelName => Name(Detected);

    /// <summary>Every kernel this CPU can run, widest first (the scalar loops always).</summary>
    public static IReadOnlyList<DecodeKernel> Supported { get; } =
        [.. new[] { DecodeKernel.Vector512, DecodeKernel.Vector256, DecodeKernel.Vector128, DecodeKernel.Scalar }.Where(IsSupported)];

    /// <summary>Whether <paramref name="kernel"/> runs here: its width accelerated by .NET, with a real FMA instruction.</summary>
    public static bool IsSupported(DecodeKernel kernel) => kernel switch
    {
        DecodeKernel.Vector512 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported, // AVX-512F has its own FMA
        DecodeKernel.Vector256 => Vector256.IsHardwareAccelerated && Fma.IsSupported,
        DecodeKernel.Vector128 => Vector128.IsHardwareAccelerated && (Fma.IsSupported || AdvSimd.Arm64.IsSupported),
        _ => true,
    };

    /// <summary>A kernel in words: its width and the instruction set that serves it.</summary>
    public static string Name(DecodeKernel kernel) => kernel switch
    {
        DecodeKernel.Vector512 => "Vector512 (AVX-512F)",
        DecodeKernel.Vector256 => "Vector256 (AVX2+FMA)",
        DecodeKernel.Vector128 => AdvSimd.Arm64.IsSupported ? "Vector128 (AdvSimd)" : "Vector128 (FMA)",
        _ => "scalar",
    };

    /// <summary>Whether the vector kernel runs for rows of <paramref name="cols"/> columns on this thread (any width: columns
    /// past the last whole vector take a scalar tail), else the scalar loops do.</summary>
    public static bool Vectorized(long cols) => cols > 0 && Kernel != DecodeKernel.Scalar;

    /// <summary>
    /// Runs this thread's products with <paramref name="kernel"/> until disposed (tests and benchmarks: every path this CPU
    /// has, on one machine); throws when the CPU cannot run it.
    /// </summary>
    public static KernelScope Use(DecodeKernel kernel)
    {
        if (!IsSupported(kernel)) throw new NotSupportedException($"The {Name(kernel)} decode kernel does not run on this CPU ({CpuDescription()}).");
        return Carry(kernel);
    }

    /// <summary>The kernel this thread was told to <see cref="Use"/>, or null: what another thread doing this thread's work must take (<see cref="Carry"/>).</summary>
    internal static DecodeKernel? Forced => t_forced;

    /// <summary>Runs this thread's products with <paramref name="forced"/> (another thread's <see cref="Forced"/>, null for the detected kernel) until disposed.</summary>
    internal static KernelScope Carry(DecodeKernel? forced)
    {
        var previous = t_forced;
        t_forced = forced;
        return new KernelScope(previous);
    }

    /// <summary>Restores the kernel a thread used before <see cref="Use"/>.</summary>
    public readonly struct KernelScope(DecodeKernel? previous) : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => t_forced = previous;
    }

    /// <summary>
    /// Refuses <paramref name="option"/> (a decode path that only pays with vectors, like int8 weights) where no vector
    /// kernel serves this CPU, naming the CPU: such an option must never fall back silently to the scalar loops.
    /// </summary>
    public static void RequireVectorPath(string option)
    {
        if (Detected != DecodeKernel.Scalar) return;
        throw new NotSupportedException(
            $"{option} needs a vector decode kernel (AVX-512F, AVX2+FMA or ARM64 AdvSimd), and this CPU has none that .NET accelerates: " +
            $"{CpuDescription()}. Leave {option} off here; decoding then uses LibTorch's GEMMs.");
    }

    /// <summary>The CPU in words: its model name where the OS says it, the architecture, the instruction sets the kernels need, and any .NET ISA switches set.</summary>
    internal static string CpuDescription()
    {
        var parts = new List<string>();
        if (OperatingSystem.IsLinux() && File.Exists("/proc/cpuinfo"))
        {
            try
            {
                var model = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
                if (model?.IndexOf(':') is int colon and >= 0) parts.Add(model[(colon + 1)..].Trim());
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        parts.Add(RuntimeInformation.ProcessArchitecture.ToString());
        parts.Add(RuntimeInformation.ProcessArchitecture is Architecture.Arm64
            ? $"AdvSimd {YesNo(AdvSimd.Arm64.IsSupported)}"
            : $"AVX-512F {YesNo(Avx512F.IsSupported)}, AVX2 {YesNo(Avx2.IsSupported)}, FMA {YesNo(Fma.IsSupported)}, Vector128 accelerated {YesNo(Vector128.IsHardwareAccelerated)}");
        var switches = Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Where(k => k.StartsWith("DOTNET_Enable", StringComparison.OrdinalIgnoreCase) || k.StartsWith("DOTNET_PreferredVectorBitWidth", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal).Select(k => $"{k}={Environment.GetEnvironmentVariable(k)}").ToList();
        if (switches.Count > 0) parts.Add($".NET ISA switches: {string.Join(' ', switches)}");
        return string.Join("; ", parts);
    }

    private static string YesNo(bool value) => value ? "yes" : "no";
}
