using System.Diagnostics;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>What the machine is, and what it can do, measured in the same run.</summary>
internal static class Machine
{
    public static string Describe()
    {
        string cpu = "unknown", cores = Environment.ProcessorCount.ToString(System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var psi = new ProcessStartInfo("lscpu") { RedirectStandardOutput = true, UseShellExecute = false };
            using var p = Process.Start(psi)!;
            string text = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            foreach (var line in text.Split('\n'))
            {
                if (line.StartsWith("Model name:", StringComparison.Ordinal)) cpu = line["Model name:".Length..].Trim();
                if (line.StartsWith("CPU(s):", StringComparison.Ordinal)) cores = line["CPU(s):".Length..].Trim();
            }
            bool bf16 = text.Contains("avx512_bf16", StringComparison.Ordinal), amx = text.Contains("amx", StringComparison.Ordinal);
            cpu += $" ({(bf16 ? "AVX-512 BF16" : "no AVX-512 BF16")}, {(amx ? "AMX" : "no AMX")})";
        }
        catch (Exception e) { cpu = $"lscpu failed: {e.Message}"; }
        long memKb = 0;
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemTotal:", StringComparison.Ordinal)) memKb = long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        string os = File.Exists("/etc/os-release") ? File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))?.Split('=')[1].Trim('"') ?? "" : "";
        return $"{cpu}; {cores} CPUs; {memKb / 1024.0 / 1024.0:F1} GiB RAM; {os}; .NET {Environment.Version}; TorchSharp {typeof(TorchSharp.torch).Assembly.GetName().Version}";
    }

    public static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "";

    /// <summary>Disk read bandwidth measured by <see cref="MeasureDiskBandwidth"/> (0 until measured).</summary>
    public static double DiskBandwidth { get; set; }

    /// <summary>Reads a 256 MiB file after evicting it from the page cache (posix_fadvise DONTNEED), median of 3, bytes/s.</summary>
    public static double MeasureDiskBandwidth(string folder, long bytes = 256L << 20)
    {
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "disk-bandwidth.bin");
        var buffer = new byte[1 << 20];
        new Random(1).NextBytes(buffer);
        using (var f = new FileStream(path, FileMode.Create, FileAccess.Write))
        {
            for (long w = 0; w < bytes; w += buffer.Length) f.Write(buffer);
            f.Flush(flushToDisk: true);
        }
        var times = new List<double>();
        for (int r = 0; r < 3; r++)
        {
            BenchStores.Evict(path);
            var c = Stopwatch.StartNew();
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
            while (f.Read(buffer) > 0) { }
            times.Add(c.Elapsed.TotalSeconds);
        }
        File.Delete(path);
        return bytes / Stats.Median(times);
    }

    /// <summary>
    /// Read bandwidth: bytes per second streamed by <paramref name="threads"/> threads summing disjoint parts of a
    /// <paramref name="bytes"/> buffer with vectorised code (TensorPrimitives.Sum), median of runs: the rate at which a
    /// bandwidth-bound GEMV can at best read its weights.
    /// </summary>
    public static double ReadBandwidth(int threads, long bytes = 512L << 20, int runs = 7)
    {
        var data = new float[bytes / 4];
        Array.Fill(data, 1f);
        int part = data.Length / threads;
        var sums = new float[threads];
        void Read() => Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads },
            i => sums[i] = System.Numerics.Tensors.TensorPrimitives.Sum(data.AsSpan(i * part, part)));
        Read();
        var times = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            var c = Stopwatch.StartNew();
            Read();
            times.Add(c.Elapsed.TotalSeconds);
        }
        return (double)part * threads * 4 / Stats.Median(times);
    }

    /// <summary>Copy bandwidth: bytes copied per second by a tensor copy of <paramref name="bytes"/> (median of runs).</summary>
    public static double CopyBandwidth(long bytes = 512L << 20, int runs = 7)
    {
        using var scope = NewDisposeScope();
        var src = ones(bytes / 2, ScalarType.BFloat16);
        var dst = empty(bytes / 2, ScalarType.BFloat16);
        dst.copy_(src);
        var times = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            var c = Stopwatch.StartNew();
            dst.copy_(src);
            times.Add(c.Elapsed.TotalSeconds);
        }
        return bytes / Stats.Median(times);
    }

    /// <summary>Peak resident set since the last <see cref="ResetPeakRss"/> (VmHWM), bytes.</summary>
    public static long PeakRss()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return 1024 * long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }

    public static long Rss()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return 1024 * long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture);
        return 0;
    }

    /// <summary>Resets VmHWM to the current RSS (Linux: write 5 to clear_refs).</summary>
    public static void ResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
