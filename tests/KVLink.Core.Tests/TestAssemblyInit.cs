using System.Runtime.CompilerServices;

namespace KVLink.Core.Tests;

internal static class TestAssemblyInit
{
    // Load TorchSharp's native library (patched where the system libstdc++ is too old) before any test
    // touches torch. If it cannot load, the first torch call fails with the loader's real reason.
    [ModuleInitializer]
    internal static void Init()
    {
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
