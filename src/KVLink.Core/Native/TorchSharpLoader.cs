using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace KVLink.Core.Native;

/// <summary>
/// Makes TorchSharp's native library load on Linux distributions whose libstdc++ is older than
/// the one it was built against (Debian 12, Ubuntu 22.04: no <c>GLIBCXX_3.4.32</c>).
/// </summary>
/// <remarks>
/// TorchSharp 0.107's <c>libLibTorchSharp.so</c> asks for <c>GLIBCXX_3.4.32</c> only for
/// <c>std::ios_base_library_init</c>, a symbol no relocation references. Where the system library
/// lacks that version, we write a copy of the file with that one version-need marked weak into a
/// private cache folder and load it before TorchSharp initialises; TorchSharp then finds it
/// already loaded by its soname. The NuGet cache, the application folder and system libraries are
/// never modified, and nothing happens where the original loads as it is.
/// Runs automatically when KVLink.Core is first used; call <see cref="EnsureLoaded"/> to run it
/// earlier (for example before touching <c>TorchSharp.torch</c> directly).
/// </remarks>
public static class TorchSharpLoader
{
    private const string LibTorchSharp = "libLibTorchSharp.so";

    /// <summary>Versions we know to be safe to weaken: their symbols are referenced by no relocation.</summary>
    private static readonly HashSet<string> WeakenableVersions = ["GLIBCXX_3.4.32"];

    private static readonly Lock Gate = new();
    private static bool _done;

    /// <summary>The patched copy that was loaded, or null when the original loaded as it is (or on other platforms).</summary>
    public static string? PatchedLibraryPath { get; private set; }

    /// <summary>The folder the original <c>libLibTorchSharp.so</c> was found in, or null when none was found.</summary>
    public static string? OriginalLibraryDirectory { get; private set; }

#pragma warning disable CA2255 // A library module initializer is the point: it must run before TorchSharp's static constructor.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void OnModuleLoad()
    {
        // Never throw from a module initializer; the real reason resurfaces on EnsureLoaded or in TorchSharp.
        try { EnsureLoaded(); } catch (Exception) { }
    }

    /// <summary>
    /// Loads TorchSharp's native library, patching a private copy when the system libstdc++ is too old.
    /// Idempotent and thread safe.
    /// </summary>
    /// <exception cref="DllNotFoundException">The library cannot be loaded even after patching; the message holds the loader's real reason.</exception>
    public static void EnsureLoaded()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return;
        lock (Gate)
        {
            if (_done) return;
            var dirs = CandidateDirectories().ToList();
            string? torchSharpDir = dirs.FirstOrDefault(d => File.Exists(Path.Combine(d, LibTorchSharp)));
            if (torchSharpDir is null) { _done = true; return; } // No TorchSharp native runtime here: TorchSharp reports it.
            OriginalLibraryDirectory = torchSharpDir;

            // libLibTorchSharp's DT_NEEDED libtorch libraries are found by soname once loaded.
            string? libTorchDir = dirs.FirstOrDefault(d => File.Exists(Path.Combine(d, "libtorch.so")));
            if (libTorchDir is not null)
                foreach (var name in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
                    if (File.Exists(Path.Combine(libTorchDir, name))) NativeLibrary.Load(Path.Combine(libTorchDir, name));

            string original = Path.Combine(torchSharpDir, LibTorchSharp);
            string firstError;
            try
            {
                NativeLibrary.Load(original);
                _done = true;
                return;
            }
            catch (DllNotFoundException e) { firstError = e.Message; }

            if (!WeakenableVersions.Any(v => firstError.Contains(v, StringComparison.Ordinal)))
                throw new DllNotFoundException(LoadFailureMessage(original, firstError));

            string patched = WritePatchedCopy(original);
            try
            {
                NativeLibrary.Load(patched);
            }
            catch (DllNotFoundException e)
            {
                throw new DllNotFoundException(
                    $"TorchSharp's native library '{original}' failed to load ({firstError}), and so did the patched copy '{patched}': {e.Message}");
            }
            PatchedLibraryPath = patched;
            _done = true;
        }
    }

    private static volatile bool _runtimeReady;

    /// <summary>
    /// Checks that a LibTorch runtime is present (TorchSharp's CPU backend initialises); throws an error naming the packages
    /// to reference when none is: TorchSharp itself only fails later, deep in a tensor call. Idempotent once it succeeds.
    /// </summary>
    /// <exception cref="InvalidOperationException">No LibTorch runtime package is referenced (or its native files failed to load).</exception>
    internal static void EnsureRuntime()
    {
        if (_runtimeReady) return;
        CheckRuntime(() =>
        {
            EnsureLoaded();
            return TorchSharp.torch.TryInitializeDeviceType(TorchSharp.DeviceType.CPU);
        });
        _runtimeReady = true;
    }

    /// <summary>The check of <see cref="EnsureRuntime()"/> with the probe given (tests).</summary>
    internal static void CheckRuntime(Func<bool> probe)
    {
        Exception? error = null;
        bool ok;
        try { ok = probe(); }
        catch (Exception e) when (e is DllNotFoundException or NotSupportedException or TypeInitializationException or BadImageFormatException or EntryPointNotFoundException)
        {
            ok = false;
            error = e;
        }
        if (!ok) throw new InvalidOperationException(MissingRuntimeMessage(error?.Message), error);
    }

    /// <summary>The message of a missing LibTorch runtime: what to add to the application.</summary>
    internal static string MissingRuntimeMessage(string? reason) =>
        "TorchSharp's native LibTorch runtime could not be loaded. KVLink.Core references the TorchSharp bindings only: the application "
        + "picks the runtime by referencing one package, TorchSharp-cpu (any machine), TorchSharp-cuda-linux or TorchSharp-cuda-windows (NVIDIA GPUs), "
        + "e.g. `dotnet add package TorchSharp-cpu`, the same version as TorchSharp."
        + (string.IsNullOrWhiteSpace(reason) ? "" : $" The loader said: {reason}");

    /// <summary>
    /// The message of TorchSharp's native library failing to load for a reason patching cannot fix. The usual one is a
    /// missing LibTorch: TorchSharp ships <c>libLibTorchSharp.so</c> itself, but <c>libtorch.so</c> and <c>libc10.so</c>
    /// come from the runtime package the application did not add, and the loader only says "cannot open shared object file".
    /// </summary>
    internal static string LoadFailureMessage(string library, string loaderError) =>
        NamesMissingLibTorch(loaderError)
            ? MissingRuntimeMessage($"'{library}' failed to load: {loaderError}")
            : $"TorchSharp's native library '{library}' failed to load: {loaderError}";

    /// <summary>Whether a loader error is a LibTorch library (from a runtime package, not TorchSharp) that was not found.</summary>
    private static bool NamesMissingLibTorch(string loaderError) =>
        new[] { "libtorch", "libc10", "torch_cpu", "LibTorchSharp" }.Any(n => loaderError.Contains(n, StringComparison.OrdinalIgnoreCase))
        && (loaderError.Contains("cannot open shared object file", StringComparison.OrdinalIgnoreCase)
            || loaderError.Contains("No such file", StringComparison.OrdinalIgnoreCase)
            || loaderError.Contains("not found", StringComparison.OrdinalIgnoreCase)
            || loaderError.Contains("could not be found", StringComparison.OrdinalIgnoreCase));

    private static IEnumerable<string> CandidateDirectories()
    {
        // The host's own native probing list first (it includes NuGet-cache folders when the app runs from them).
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string list)
            foreach (var d in list.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)) yield return d;
        string baseDir = AppContext.BaseDirectory;
        yield return Path.Combine(baseDir, "runtimes", "linux-x64", "native");
        yield return baseDir;
        string? torchSharp = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location);
        if (!string.IsNullOrEmpty(torchSharp))
        {
            yield return Path.Combine(torchSharp, "runtimes", "linux-x64", "native");
            yield return torchSharp;
        }
    }

    private static string WritePatchedCopy(string original)
    {
        byte[] bytes = File.ReadAllBytes(original);
        string hash = Convert.ToHexStringLower(SHA256.HashData(bytes))[..16];
        int changed = ElfVersionPatcher.MarkWeak(bytes, WeakenableVersions);
        if (changed == 0)
            throw new DllNotFoundException($"'{original}' needs a libstdc++ version this system lacks, and has no entry that can be weakened.");

        string dir = Path.Combine(CacheRoot(), hash);
        string target = Path.Combine(dir, LibTorchSharp);
        if (File.Exists(target) && new FileInfo(target).Length == bytes.Length) return target;

        Directory.CreateDirectory(dir);
        // Write beside the target, then rename: another process never sees a half-written library.
        string temp = Path.Combine(dir, $".{LibTorchSharp}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        using (var f = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
        {
            f.Write(bytes);
            f.Flush(flushToDisk: true);
        }
        File.Move(temp, target, overwrite: true);
        return target;
    }

    private static string CacheRoot()
    {
        string? configured = Environment.GetEnvironmentVariable("KVLINK_NATIVE_CACHE");
        if (!string.IsNullOrWhiteSpace(configured)) return configured;
        string local = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData);
        if (!string.IsNullOrEmpty(local) && IsWritable(local)) return Path.Combine(local, "kvlink-core", "native");
        return Path.Combine(Path.GetTempPath(), $"kvlink-core-native-{Environment.UserName}");
    }

    private static bool IsWritable(string dir)
    {
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, $".kvlink-probe-{Guid.NewGuid():N}");
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }
}
