using System.Runtime.ExceptionServices;
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
/// uses the spinning workers themselves. The runtime is the one libtorch_cpu.so itself binds (its dependency, resolved
/// by the dynamic loader), never merely the first libgomp in the process: another library's OpenMP runtime would start
/// a second team that competes with LibTorch's. Where the process has no LibTorch OpenMP runtime (other platforms,
/// other LibTorch builds) <see cref="Available"/> is false and callers use .NET's pool.
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
            _ = TorchSharp.torch.get_num_threads(); // makes sure LibTorch, and with it its OpenMP runtime, is loaded
            if (MappedFile(name => name == "libtorch_cpu.so") is not { } torchCpu || !NativeLibrary.TryLoad(torchCpu, out var lib)) return;
            // dlsym on libtorch_cpu's handle searches it and then its dependencies, in the loader's order: libtorch_cpu
            // only imports these symbols, so they resolve to the OpenMP runtime it was linked against.
            if (!NativeLibrary.TryGetExport(lib, "GOMP_parallel", out var parallel)
                || !NativeLibrary.TryGetExport(lib, "omp_get_thread_num", out var threadNum)
                || !NativeLibrary.TryGetExport(lib, "omp_get_num_threads", out var numThreads)) return;
            Library = MappedFileAt(parallel);
            s_parallel = (delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void>)parallel;
            s_threadNum = (delegate* unmanaged<int>)threadNum;
            s_numThreads = (delegate* unmanaged<int>)numThreads;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Not available: callers fall back to .NET's thread pool.
        }
    }

    /// <summary>Whether LibTorch's OpenMP runtime was found and work can run on its team.</summary>
    public static bool Available => s_parallel != null && Enabled;

    /// <summary>The file of the OpenMP runtime found (LibTorch's own libgomp, with a hashed name), or null.</summary>
    public static string? Library { get; }

    /// <summary>Lets benchmarks compare against .NET's pool in one process (true unless they turn it off).</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>
    /// Calls <paramref name="body"/>(<paramref name="state"/>, thread, threads) once on each of
    /// <paramref name="threads"/> team threads (the caller is thread 0) and returns when all have finished.
    /// <paramref name="state"/> must stay fixed until this returns. An exception from <paramref name="body"/> on any
    /// thread is rethrown here, after the whole team has finished (the first one, if several threw).
    /// </summary>
    public static void Run(int threads, delegate*<void*, int, int, void> body, void* state)
    {
        if (!Available) throw new InvalidOperationException("LibTorch's OpenMP runtime was not found.");
        // Already on a team thread (a kernel inside a group of StepGroups): the team is busy, so the work runs here as a
        // team of one, without a nested OpenMP region.
        if (t_inTeam) { body(state, 0, 1); return; }
        var job = new Job { Body = body, State = state };
        s_parallel(&Entry, &job, (uint)threads, 0);
        if (job.Error == 0) return;
        var handle = GCHandle.FromIntPtr(job.Error);
        var error = (ExceptionDispatchInfo)handle.Target!;
        handle.Free();
        error.Throw();
    }

    /// <summary>
    /// Calls <paramref name="body"/>(<paramref name="state"/>, thread, threads) on <paramref name="threads"/> threads: the
    /// team where it is <see cref="Available"/>, else .NET's pool; on the calling thread alone for one. How the work is
    /// split is the body's (the kernels split their output rows by thread).
    /// </summary>
    public static void RunOrPool(int threads, delegate*<void*, int, int, void> body, void* state)
    {
        if (threads <= 1) { body(state, 0, 1); return; }
        if (Available) { Run(threads, body, state); return; }
        nint f = (nint)body, s = (nint)state; // pointers cannot be captured by the lambda
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t => ((delegate*<void*, int, int, void>)f)((void*)s, t, threads));
    }

    /// <summary>Whether this thread is running a team body (<see cref="Run"/> then runs nested work inline).</summary>
    [ThreadStatic] private static bool t_inTeam;

    private struct Job
    {
        public delegate*<void*, int, int, void> Body;
        public void* State;
        public nint Error; // a GCHandle to the first exception's ExceptionDispatchInfo; 0 while none
    }

    /// <summary>
    /// Each team thread's entry. An exception must not leave it (it would cross native frames and end the process), so
    /// it is caught and carried back to <see cref="Run"/>'s caller.
    /// </summary>
    [UnmanagedCallersOnly]
    private static void Entry(void* data)
    {
        var job = (Job*)data;
        bool outer = t_inTeam;
        t_inTeam = true;
        try
        {
            job->Body(job->State, s_threadNum(), s_numThreads());
        }
        catch (Exception e)
        {
            var handle = GCHandle.Alloc(ExceptionDispatchInfo.Capture(e));
            if (Interlocked.CompareExchange(ref job->Error, GCHandle.ToIntPtr(handle), 0) != 0) handle.Free();
        }
        finally
        {
            t_inTeam = outer;
        }
    }

    /// <summary>The first file mapped into this process whose name satisfies <paramref name="match"/>.</summary>
    private static string? MappedFile(Func<string, bool> match) =>
        Mappings().Select(m => m.Path).FirstOrDefault(p => match(Path.GetFileName(p)));

    /// <summary>The file mapped at <paramref name="address"/>.</summary>
    private static string? MappedFileAt(nint address) =>
        Mappings().FirstOrDefault(m => (ulong)address >= m.Start && (ulong)address < m.End).Path;

    /// <summary>The file-backed ranges of /proc/self/maps ("start-end perms offset dev inode path").</summary>
    private static IEnumerable<(ulong Start, ulong End, string Path)> Mappings()
    {
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            int slash = line.IndexOf('/'), dash = line.IndexOf('-'), space = line.IndexOf(' ');
            if (slash < 0 || dash < 0 || space < dash) continue;
            yield return (Convert.ToUInt64(line[..dash], 16), Convert.ToUInt64(line[(dash + 1)..space], 16), line[slash..]);
        }
    }
}
