namespace KVLink.Benchmarks;

internal static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        var v = values.Where(x => !double.IsNaN(x)).OrderBy(x => x).ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    public static string Ms(double ms) => double.IsNaN(ms) ? "–" : ms >= 10000 ? $"{ms / 1000:F1} s" : ms >= 100 ? $"{ms:F0} ms" : ms >= 10 ? $"{ms:F1} ms" : $"{ms:F2} ms";
    public static string X(double r) => double.IsNaN(r) ? "–" : r >= 100 ? $"{r:F0}x" : r >= 10 ? $"{r:F1}x" : $"{r:F2}x";
    public static string Pct(double r) => double.IsNaN(r) ? "–" : $"{r * 100:F1} %";
    public static string Bytes(double b) => b >= 1 << 30 ? $"{b / (1 << 30):F2} GiB" : b >= 1 << 20 ? $"{b / (1 << 20):F1} MiB" : b >= 1024 ? $"{b / 1024:F1} KiB" : $"{b:F0} B";
}
