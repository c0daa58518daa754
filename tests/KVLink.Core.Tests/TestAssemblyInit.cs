using System.Runtime.CompilerServices;

namespace KVLink.Core.Tests;

internal static class TestAssemblyInit
{
    // Load TorchSharp's native library (patched where the system libstdc++ is too old) before any test
    // touches torch. If it cannot load, the first torch call fails with the loader's real reason.
    [ModuleInitializer]
    internal static void Init()
    {
        // The cluster tests run Garnet nodes in this process and talk to them (and to redis-server) through
        // StackExchange.Redis, whose completions need pool threads. With the pool's minimum at the core count (2 here),
        // tests blocking pool threads elsewhere in the run starved them: a PTTL waited 17 s for its completion ("WORKER:
        // Busy=17 ... QueuedItems=88") and a timed-out write left a TTL test without its key. A higher minimum lets the
        // pool grow at once instead of one thread per half second; it changes no product code.
        ThreadPool.GetMinThreads(out int workers, out int io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), Math.Max(io, 32));
        // Engines loaded with DType = Auto cache their calibration GEMMs per machine; tests keep theirs in a folder of
        // this run, never in the user's cache folder (where a figure taken under a test run's load would persist).
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("KVLINK_CACHE_DIR")))
            Environment.SetEnvironmentVariable("KVLINK_CACHE_DIR", Path.Combine(Path.GetTempPath(), $"kvlink-test-cache-{Environment.ProcessId}"));
        try { KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); }
        catch (DllNotFoundException e) { LoadError = e; }
    }

    /// <summary>Why the native library did not load, if it did not.</summary>
    internal static Exception? LoadError { get; private set; }
}
