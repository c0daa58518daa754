using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>The compute dtype an engine runs with and why: the resolution of <see cref="ComputeDType.Auto"/>.</summary>
/// <param name="DType">BFloat16, Float16 or Float32 (never Auto).</param>
/// <param name="Reason">Why, for the log line and <see cref="KvLinkRuntimeInfo.ComputeDTypeReason"/>.</param>
/// <param name="FromAuto">True when <see cref="ComputeDType.Auto"/> chose it; an Auto float32 keeps bf16 copies for decoding.</param>
internal sealed record ComputeDTypeChoice(ComputeDType DType, string Reason, bool FromAuto)
{
    /// <summary>
    /// bf16 is chosen when its measured GEMM rate is at least this fraction of float32's: bf16 halves the weights and every
    /// cache byte (store, transfer, attention reads), worth a small loss in the prompt GEMMs but not a large one.
    /// </summary>
    public const double Bf16MinRatio = 0.9;

    /// <summary>The TorchSharp element type of <see cref="DType"/>.</summary>
    public ScalarType ScalarType => ToScalarType(DType);

    /// <summary>The TorchSharp element type of a resolved dtype.</summary>
    public static ScalarType ToScalarType(ComputeDType dtype) => dtype switch
    {
        ComputeDType.Float32 => ScalarType.Float32,
        ComputeDType.Float16 => ScalarType.Float16,
        ComputeDType.BFloat16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Auto must be resolved first."),
    };

    /// <summary>The option value of a model's element type.</summary>
    public static ComputeDType FromScalarType(ScalarType type) => type switch
    {
        ScalarType.Float32 => ComputeDType.Float32,
        ScalarType.Float16 => ComputeDType.Float16,
        _ => ComputeDType.BFloat16,
    };

    /// <summary>
    /// The decision, a pure function of what is known: an explicit dtype wins; on CUDA bf16 (tensor cores); on a CPU
    /// without bf16 units float32 (LibTorch widens bf16 in software there: 2-5x slower GEMMs at prompt sizes); on a CPU
    /// with them, the measured rates decide (<paramref name="rates"/>; null only when not measured), since LibTorch may
    /// not use the units (an older oneDNN, <c>ONEDNN_MAX_CPU_ISA</c>) or the float32 GEMM may simply be faster.
    /// </summary>
    /// <param name="requested">The option value.</param>
    /// <param name="cuda">The model runs on a CUDA device.</param>
    /// <param name="tier">The CPU's tier.</param>
    /// <param name="rates">Measured (or cached) GEMM rates of this machine.</param>
    /// <param name="cached">Whether <paramref name="rates"/> came from the per-machine cache file.</param>
    public static ComputeDTypeChoice Decide(ComputeDType requested, bool cuda, CpuTier tier, GemmRates? rates, bool cached = false)
    {
        if (requested != ComputeDType.Auto) return new(requested, "explicit", FromAuto: false);
        if (cuda) return new(ComputeDType.BFloat16, "table: CUDA computes bf16 natively", FromAuto: true);
        if (!tier.ComputesBf16Natively()) return new(ComputeDType.Float32, $"table: {tier.Name()} has no bf16 units", FromAuto: true);
        if (rates is null) return new(ComputeDType.Float32, $"table: {tier.Name()}, bf16 not measured", FromAuto: true);
        var dtype = rates.Bf16GflopS >= Bf16MinRatio * rates.Float32GflopS ? ComputeDType.BFloat16 : ComputeDType.Float32;
        return new(dtype, $"{(cached ? "cached" : "measured")}: bf16 {rates.Bf16GflopS:F0} vs float32 {rates.Float32GflopS:F0} GFLOP/s", FromAuto: true);
    }

    /// <summary>
    /// Resolves <see cref="KvLinkOptions.DType"/> for a model about to be loaded on <paramref name="device"/> (null: CPU),
    /// measuring the CPU's GEMMs only where the table cannot tell, and then once per machine (<see cref="DTypeCalibration"/>).
    /// </summary>
    public static ComputeDTypeChoice Resolve(KvLinkOptions options, Device? device)
    {
        bool cuda = device is not null && device.type == TorchSharp.DeviceType.CUDA;
        var tier = CpuCapabilities.Current.Tier;
        if (options.DType != ComputeDType.Auto || cuda || !tier.ComputesBf16Natively()) return Decide(options.DType, cuda, tier, null);
        var (rates, cached) = DTypeCalibration.RatesOfThisMachine(options.CalibrationCacheFolder);
        return Decide(options.DType, cuda, tier, rates, cached);
    }
}

/// <summary>Measured GEMM rates of one machine at a projection-like shape.</summary>
/// <param name="Bf16GflopS">bf16 GEMM rate.</param>
/// <param name="Float32GflopS">float32 GEMM rate.</param>
internal sealed record GemmRates(double Bf16GflopS, double Float32GflopS);
