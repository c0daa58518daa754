using System.Runtime.CompilerServices;

namespace KVLink.Core.Tests;

internal static class TestAssemblyInit
{
    // Load TorchSharp's native library (patched where the system libstdc++ is too old) before any test
    // touches torch. If it cannot load, the first torch call fails with the loader's real reason.
    [ModuleInitializer]
    internal static void Init()
    {
        try { KVLink.Core.Native.TorchSharpLoader.EnsureLoaded(); }
        catch (DllNotFoundException e) { LoadError = e; }
    }

    /// <summary>Why the native library did not load, if it did not.</summary>
    internal static Exception? LoadError { get; private set; }
}
