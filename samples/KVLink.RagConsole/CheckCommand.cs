using KVLink.Core.Engine;

namespace KVLink.RagConsole;

/// <summary><c>check &lt;folder&gt;</c>: prints <see cref="KvLinkCheckpointReport.Inspect"/>'s report; exit code 0 when the folder looks loadable, 1 when not.</summary>
internal static class CheckCommand
{
    public static int Run(string folder, ComputeDType dtype, TextWriter output)
    {
        var report = KvLinkCheckpointReport.Inspect(folder, dtype);
        output.WriteLine($"Checkpoint {report.Folder}");
        foreach (string line in report.Found) output.WriteLine($"  found    {line}");
        foreach (string line in report.Problems) output.WriteLine($"  PROBLEM  {line}");
        if (report.WeightBytes is { } weights)
            output.WriteLine($"  memory   weights {Bytes(weights)} at {report.DType}" +
                             (report.CacheBytesPer1kTokens is { } cache ? $", plus {Bytes(cache)} of KV cache per 1,024 tokens held (documents in memory, live requests)" : ""));
        output.WriteLine($"  cpu      {report.CpuTier}");
        output.WriteLine(report.CanLoad ? "OK: the folder should load." : $"NOT LOADABLE: {report.Problems.Count} problem(s).");
        return report.CanLoad ? 0 : 1;
    }

    private static string Bytes(long n) => n >= 1L << 30 ? $"{n / (double)(1L << 30):F2} GiB" : n >= 1L << 20 ? $"{n / (double)(1L << 20):F1} MiB" : $"{n / 1024.0:F1} KiB";
}
