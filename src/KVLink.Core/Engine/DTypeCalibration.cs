using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using System.Text.Json;
using TorchSharp;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// The measurement behind <see cref="ComputeDType.Auto"/> on CPUs with bf16 units: one bf16 and one float32 GEMM of a
/// projection-like shape (<see cref="Rows"/> token rows times a [<see cref="Outputs"/>, <see cref="Inputs"/>] weight, about
/// half a GFLOP each), best of a few runs within a time bound, so well under a second even where LibTorch's bf16 runs in
/// software. The result is cached per machine in a small JSON file keyed by what decides it (<see cref="MachineKey"/>);
/// the file is written atomically, and an unreadable or foreign one is ignored and rewritten.
/// </summary>
internal static class DTypeCalibration
{
    /// <summary>Token rows of the measured GEMM: a prompt chunk, where the dtype matters (decoding rows use the bandwidth kernel).</summary>
    public const int Rows = 128;

    /// <summary>Input features of the measured weight (the 1B shape's hidden size).</summary>
    public const int Inputs = 2048;

    /// <summary>Output features of the measured weight.</summary>
    public const int Outputs = 1024;

    /// <summary>Time after which no further rounds are started (after at least two): about 6 rounds where bf16 is native, 2-3 where it is not.</summary>
    private static readonly TimeSpan Budget = TimeSpan.FromMilliseconds(150);

    private const string FileVersion = "kvlink-dtype-calibration-v1";

    /// <summary>The rates of this machine: from the cache file when it holds this machine's, else measured and written.</summary>
    /// <param name="folder">The cache folder; null uses <see cref="DefaultFolder"/>.</param>
    public static (GemmRates Rates, bool Cached) RatesOfThisMachine(string? folder)
    {
        string key = MachineKey();
        string? path = PathFor(folder ?? DefaultFolder(), key);
        if (path is not null && TryRead(path, key) is { } cached) return (cached, true);
        var rates = Measure();
        if (path is not null) TryWrite(path, key, rates);
        return (rates, false);
    }

    /// <summary>
    /// What the rates depend on: the CPU model and tier, the LibTorch build (TorchSharp's version pins it), LibTorch's
    /// thread count and its ISA overrides (an AVX2-emulated run must not reuse the real machine's result).
    /// </summary>
    public static string MachineKey()
    {
        var cpu = CpuCapabilities.Current;
        var lt = LibTorchCpuInfo.Current;
        string torchSharp = typeof(TorchSharp.torch).Assembly.GetName().Version?.ToString() ?? "?";
        return string.Join('|', FileVersion, cpu.Model, cpu.Tier.Name(), "torchsharp " + torchSharp, "threads " + get_num_threads(),
            "aten " + lt.AtenOverride, "onednn " + lt.OneDnnOverride, "mkl " + lt.MklOverride);
    }

    /// <summary>$KVLINK_CACHE_DIR, else $XDG_CACHE_HOME/kvlink, else ~/.cache/kvlink on Linux, else LocalApplicationData/kvlink.</summary>
    public static string DefaultFolder()
    {
        if (Environment.GetEnvironmentVariable("KVLINK_CACHE_DIR") is { Length: > 0 } own) return own;
        if (Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg) return Path.Combine(xdg, "kvlink");
        string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (OperatingSystem.IsLinux() && home.Length > 0) return Path.Combine(home, ".cache", "kvlink");
        string local = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData);
        return Path.Combine(local.Length > 0 ? local : Path.GetTempPath(), "kvlink");
    }

    /// <summary>The file of <paramref name="key"/> in <paramref name="folder"/> (one per key, so machines sharing a home folder never overwrite each other).</summary>
    public static string? PathFor(string folder, string key)
    {
        if (string.IsNullOrWhiteSpace(folder)) return null;
        string hash = Convert.ToHexStringLower(XxHash64.Hash(Encoding.UTF8.GetBytes(key)));
        return Path.Combine(folder, $"dtype-calibration-{hash}.json");
    }

    /// <summary>The rates stored at <paramref name="path"/> for <paramref name="key"/>, or null when the file is missing, unreadable, foreign or not sane.</summary>
    public static GemmRates? TryRead(string path, string key)
    {
        try
        {
            if (!File.Exists(path) || new FileInfo(path).Length > 64 * 1024) return null;
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("key", out var k) || k.GetString() != key) return null;
            double bf16 = root.GetProperty("bf16_gflops").GetDouble(), f32 = root.GetProperty("float32_gflops").GetDouble();
            return double.IsFinite(bf16) && double.IsFinite(f32) && bf16 > 0 && f32 > 0 ? new GemmRates(bf16, f32) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
        {
            return null;
        }
    }

    /// <summary>Writes the rates atomically (a temporary file moved over the old one); a folder that cannot be written is left alone.</summary>
    public static void TryWrite(string path, string key, GemmRates rates)
    {
        string temp = $"{path}.{Guid.NewGuid():N}.tmp";
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using (var stream = File.Create(temp))
            using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            {
                json.WriteStartObject();
                json.WriteString("key", key);
                json.WriteNumber("bf16_gflops", rates.Bf16GflopS);
                json.WriteNumber("float32_gflops", rates.Float32GflopS);
                json.WriteString("shape", string.Create(CultureInfo.InvariantCulture, $"{Rows}x{Inputs} by {Outputs}x{Inputs}"));
                json.WriteString("measured_utc", DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture));
                json.WriteEndObject();
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(temp); } catch (Exception d) when (d is IOException or UnauthorizedAccessException) { }
        }
    }

    /// <summary>
    /// Measures both GEMMs on LibTorch's threads: after one call of each (LibTorch picks and prepares its kernels), rounds
    /// that run one bf16 and one float32 product back to back, so load from other processes touches both alike; the best
    /// time of each over at least two rounds, more while the time bound allows.
    /// </summary>
    public static GemmRates Measure()
    {
        Native.TorchSharpLoader.EnsureLoaded();
        using var _ = inference_mode();
        using var scope = NewDisposeScope();
        var gen = new TorchSharp.torch.Generator(17);
        using var scale = 0.02.ToScalar(); // held past the call (see HeldScalars)
        var w32 = randn([Outputs, Inputs], generator: gen).mul_(scale);
        var x32 = randn([Rows, Inputs], generator: gen);
        var w16 = w32.to(ScalarType.BFloat16);
        var x16 = x32.to(ScalarType.BFloat16);
        nn.functional.linear(x16, w16).Dispose();
        nn.functional.linear(x32, w32).Dispose();
        double bf16 = double.MaxValue, f32 = double.MaxValue;
        var total = Stopwatch.StartNew();
        for (int round = 0; round < MaxRounds && (round < 2 || total.Elapsed < Budget); round++)
        {
            bf16 = Math.Min(bf16, Time(x16, w16));
            f32 = Math.Min(f32, Time(x32, w32));
        }
        const double flop = 2.0 * Rows * Inputs * Outputs;
        return new GemmRates(flop / bf16 / 1e9, flop / f32 / 1e9);
    }

    /// <summary>Most rounds of <see cref="Measure"/>.</summary>
    private const int MaxRounds = 6;

    private static double Time(Tensor x, Tensor w)
    {
        long start = Stopwatch.GetTimestamp();
        nn.functional.linear(x, w).Dispose();
        return Math.Max(Stopwatch.GetElapsedTime(start).TotalSeconds, 1e-9);
    }
}
