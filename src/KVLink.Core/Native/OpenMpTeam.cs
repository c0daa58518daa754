using System.Runtime.InteropServices;

namespace KVLink.Core.Native;

/// <summary>
/// Runs a parallel loop of our own on LibTorch's OpenMP threads (libgomp's <c>GOMP_parallel</c>, the entry point a
/// compiler emits for <c>#pragma omp parallel</c>), instead of on .NET's thread pool.
/// </summary>
/// <remarks>
/// After every parallel LibTorch operator, libgomp's workers spin for a while before they sleep (300,000 pause
/// instructions by default: milliseconds on recent Intel cores). A kernel of ours that runs between LibTorch operators
/// on .NET pool threads then shares the cores with those spinning workers, and on a 2-core machine it measured at
/// ~60 % of the speed it reaches with <c>OMP_WAIT_POLICY=PASSIVE</c>. Handing the work to the same team instead
/// uses the spinning workers themselves. Where the process has no libgomp (other platforms, other LibTorch builds)
/// <see cref="Available"/> is false and callers use .NET's pool.
/// </remarks>
internal static unsafe class OpenMpTeam
{
    private static readonly delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void> s_parallel;
    private static readonly delegate* unmanaged<int> s_threadNum, s_numThreads;

    static OpenMpTeam()
    {
        if (!OperatingSystem.IsLinux()) return;
        try
        {
            _ = TorchSharp.torch.get_num_threads(); // makes sure LibTorch, and with it its libgomp, is loaded
            if (LoadedLibgomp() is not { } path || !NativeLibrary.TryLoad(path, out var lib)) return;
            if (!NativeLibrary.TryGetExport(lib, "GOMP_parallel", out var parallel)
                || !NativeLibrary.TryGetExport(lib, "omp_get_thread_num", out var threadNum)
                || !NativeLibrary.TryGetExport(lib, "omp_get_num_threads", out var numThreads)) return;
            s_parallel = (delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void>)parallel;
            s_threadNum = (delegate* unmanaged<int>)threadNum;
            s_numThreads = (delegate* unmanaged<int>)numThreads;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Not available: callers fall back to .NET's thread pool.
        }
    }

    /// <summary>Whether LibTorch's libgomp was found and work can run on its team.</summary>
    public static bool Available => s_parallel != null && Enabled;

    /// <summary>Lets benchmarks compare against .NET's pool in one process (true unless they turn it off).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// Calls <paramref name="body"/>(<paramref name="state"/>, thread, threads) once on each of
    /// <paramref name="threads"/> team threads (the caller is thread 0) and returns when all have finished.
    /// <paramref name="body"/> must not throw; <paramref name="state"/> must stay fixed until this returns.
    /// </summary>
    public static void Run(int threads, delegate*<void*, int, int, void> body, void* state)
    {
        if (!Available) throw new InvalidOperationException("LibTorch's OpenMP runtime was not found.");
        var job = new Job { Body = body, State = state };
        s_parallel(&Entry, &job, (uint)threads, 0);
    }

    private struct Job
    {
        public delegate*<void*, int, int, void> Body;
        public void* State;
    }

    [UnmanagedCallersOnly]
    private static void Entry(void* data)
    {
        var job = (Job*)data;
        job->Body(job->State, s_threadNum(), s_numThreads());
    }

    /// <summary>The path of the libgomp this process has mapped (LibTorch ships its own, with a hashed name).</summary>
    private static string? LoadedLibgomp()
    {
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            int slash = line.IndexOf('/');
            if (slash < 0) continue;
            var path = line[slash..];
            if (Path.GetFileName(path).StartsWith("libgomp", StringComparison.Ordinal)) return path;
        }
        return null;
    }
}
