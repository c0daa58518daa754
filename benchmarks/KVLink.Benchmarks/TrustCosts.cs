using System.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// What the cache-trust checks cost on the 1B shape, each beside the copy it rides on, measured in one run:
/// hashing every weight byte (the model fingerprint) against copying every weight once, and checking a 5k-token
/// entry for non-finite numbers against copying that entry once (what any load costs at least).
/// <c>dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- --trust-costs</c>
/// </summary>
internal static class TrustCosts
{
    public static void Run(int threads, int runs = 5)
    {
        using var m = BenchModel.Create("1b", Path.Combine(Path.GetTempPath(), $"kvlink-trust-{Environment.ProcessId}"));
        long weightBytes = m.Model.parameters().Sum(p => p.numel() * p.ElementSize);
        double hash = Median(runs, () => ModelFingerprint.Compute(m.Model, m.Tokenizer));
        // Baselines copy into buffers allocated once, so they measure memory bandwidth, not page faults.
        var targets = m.Model.parameters().Select(p => empty_like(p)).ToList();
        double copy = Median(runs, () => { foreach (var (p, t) in m.Model.parameters().Zip(targets)) t.copy_(p); });
        foreach (var t in targets) t.Dispose();

        var c = m.Config;
        using var keys = randn(c.NumHiddenLayers, c.NumKeyValueHeads, 5000, c.HeadDim).to(ScalarType.BFloat16);
        using var values = randn(c.NumHiddenLayers, c.NumKeyValueHeads, 5000, c.HeadDim).to(ScalarType.BFloat16);
        long entryBytes = 2 * keys.numel() * keys.ElementSize;
        double finite = Median(runs, () => { _ = CacheEntryCheck.AllFinite(keys) && CacheEntryCheck.AllFinite(values); });
        using var k2 = empty_like(keys);
        using var v2 = empty_like(values);
        double entryCopy = Median(runs, () => { k2.copy_(keys); v2.copy_(values); });

        Console.WriteLine($"Machine: {Machine.Describe()}; {threads} threads; medians of {runs}");
        Console.WriteLine("| check | time | baseline (same run) | time | ratio |");
        Console.WriteLine("|---|---:|---|---:|---:|");
        Console.WriteLine($"| model fingerprint, every byte of {weightBytes / 1e9:F2} GB of bf16 weights (XxHash128) | {hash:F0} ms | copying every weight once | {copy:F0} ms | {hash / copy:F2}x |");
        Console.WriteLine($"| non-finite check of a 5,000-token entry ({entryBytes / 1e6:F0} MB) | {finite:F1} ms | copying the entry once | {entryCopy:F1} ms | {finite / entryCopy:F2}x |");
    }

    private static double Median(int runs, Action action)
    {
        action(); // warm-up
        var times = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            var clock = Stopwatch.StartNew();
            action();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        times.Sort();
        return times[runs / 2];
    }
}
