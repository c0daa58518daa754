using KVLink.Core.Engine;
using KVLink.Core.Native;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// How <see cref="ComputeDType.Auto"/> resolves: a pure function of the tier, the device and the measured GEMM rates
/// (no timing is asserted), and the per-machine calibration file it caches them in.
/// </summary>
public class ComputeDTypeChoiceTests
{
    [Theory]
    [InlineData(ComputeDType.BFloat16)]
    [InlineData(ComputeDType.Float16)]
    [InlineData(ComputeDType.Float32)]
    public void An_explicit_dtype_wins_over_device_tier_and_measurements(ComputeDType explicitType)
    {
        foreach (bool cuda in (bool[])[false, true])
            foreach (var tier in Enum.GetValues<CpuTier>())
            {
                var choice = ComputeDTypeChoice.Decide(explicitType, cuda, tier, new GemmRates(1, 100));
                Assert.Equal((explicitType, "explicit", false), (choice.DType, choice.Reason, choice.FromAuto));
            }
    }

    [Fact]
    public void Auto_is_bf16_on_cuda_whatever_the_host_cpu()
    {
        foreach (var tier in Enum.GetValues<CpuTier>())
            Assert.Equal(ComputeDType.BFloat16, ComputeDTypeChoice.Decide(ComputeDType.Auto, cuda: true, tier, new GemmRates(1, 100)).DType);
    }

    [Theory]
    [InlineData("Avx2Fma")]
    [InlineData("Avx512F")]
    [InlineData("Arm64AdvSimd")]
    [InlineData("Baseline")]
    public void Auto_is_float32_on_cpus_without_bf16_units_without_measuring(string tierName)
    {
        var tier = Enum.Parse<CpuTier>(tierName);
        var choice = ComputeDTypeChoice.Decide(ComputeDType.Auto, cuda: false, tier, rates: null);
        Assert.Equal(ComputeDType.Float32, choice.DType);
        Assert.StartsWith("table:", choice.Reason, StringComparison.Ordinal);
        Assert.True(choice.FromAuto);
    }

    [Theory]
    [InlineData("Amx", 600, 100, false, ComputeDType.BFloat16)]
    [InlineData("Avx512Bf16", 95, 100, false, ComputeDType.BFloat16)]  // within the margin bf16's half bytes are worth
    [InlineData("Avx512Bf16", 40, 100, false, ComputeDType.Float32)]   // bf16 units that LibTorch does not use (ONEDNN_MAX_CPU_ISA)
    [InlineData("Amx", 15, 74, true, ComputeDType.Float32)]
    [InlineData("Arm64AdvSimdBf16", 120, 60, true, ComputeDType.BFloat16)]
    public void On_cpus_with_bf16_units_the_measured_rates_decide(string tierName, double bf16, double f32, bool cached, ComputeDType expected)
    {
        var choice = ComputeDTypeChoice.Decide(ComputeDType.Auto, cuda: false, Enum.Parse<CpuTier>(tierName), new GemmRates(bf16, f32), cached);
        Assert.Equal(expected, choice.DType);
        Assert.StartsWith(cached ? "cached:" : "measured:", choice.Reason, StringComparison.Ordinal);
        Assert.Contains($"bf16 {bf16:F0} vs float32 {f32:F0} GFLOP/s", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void The_calibration_file_round_trips_and_a_foreign_or_corrupt_one_is_ignored()
    {
        using var dir = new TempFolder();
        string key = DTypeCalibration.MachineKey(), path = DTypeCalibration.PathFor(dir.Path, key)!;
        Assert.Null(DTypeCalibration.TryRead(path, key)); // none yet
        DTypeCalibration.TryWrite(path, key, new GemmRates(12.5, 74.25));
        Assert.Equal(new GemmRates(12.5, 74.25), DTypeCalibration.TryRead(path, key));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp")); // written through a temporary file, moved into place
        Assert.Null(DTypeCalibration.TryRead(path, key + "|another machine"));

        foreach (string corrupt in (string[])["{ not json", "[]", """{"key":"x"}""", $$"""{"key":{{System.Text.Json.JsonSerializer.Serialize(key)}},"bf16_gflops":-1,"float32_gflops":5}""", "\0\0\0"])
        {
            File.WriteAllText(path, corrupt);
            Assert.Null(DTypeCalibration.TryRead(path, key));
        }
    }

    [Fact]
    public void A_corrupt_calibration_file_is_measured_again_and_rewritten()
    {
        using var dir = new TempFolder();
        string key = DTypeCalibration.MachineKey(), path = DTypeCalibration.PathFor(dir.Path, key)!;
        File.WriteAllText(path, "{ truncated");
        var (rates, cached) = DTypeCalibration.RatesOfThisMachine(dir.Path);
        Assert.False(cached);
        Assert.True(rates.Bf16GflopS > 0 && rates.Float32GflopS > 0);
        Assert.Equal(rates, DTypeCalibration.TryRead(path, key));
        var (again, fromFile) = DTypeCalibration.RatesOfThisMachine(dir.Path);
        Assert.Equal((rates, true), (again, fromFile));
    }

    [Fact]
    public void Auto_resolves_to_float32_on_this_machine_when_its_calibration_says_bf16_is_slower()
    {
        using var dir = new TempFolder();
        string key = DTypeCalibration.MachineKey();
        DTypeCalibration.TryWrite(DTypeCalibration.PathFor(dir.Path, key)!, key, new GemmRates(14, 74));
        var choice = ComputeDTypeChoice.Resolve(new KvLinkOptions { CalibrationCacheFolder = dir.Path }, device: null);
        Assert.Equal(ComputeDType.Float32, choice.DType);
        // A CPU with bf16 units reads the (seeded) cache; one without needs no measurement at all.
        Assert.StartsWith(CpuCapabilities.Current.Tier.ComputesBf16Natively() ? "cached:" : "table:", choice.Reason, StringComparison.Ordinal);
        Assert.Equal(ComputeDType.BFloat16, ComputeDTypeChoice.Resolve(new KvLinkOptions { DType = ComputeDType.BFloat16, CalibrationCacheFolder = dir.Path }, null).DType);
    }
}
