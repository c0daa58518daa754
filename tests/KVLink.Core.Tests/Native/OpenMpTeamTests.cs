using KVLink.Core.Native;

namespace KVLink.Core.Tests.Native;

/// <summary>Our kernels' parallel loops on LibTorch's own OpenMP team: the right runtime, every thread, and exceptions carried back.</summary>
public class OpenMpTeamTests
{
    [LinuxFact]
    public unsafe void On_linux_work_runs_on_LibTorchs_OpenMP_threads()
    {
        // The fast path must be the one taken where CI runs (Linux): LibTorch's libgomp is found and its team of
        // threads, the caller first, each runs our body once.
        Assert.True(OpenMpTeam.Available, "LibTorch's libgomp was not found in this process");
        var seen = new int[3];
        fixed (int* p = seen) OpenMpTeam.Run(2, &Record, p);
        Assert.Equal([1, 1, 2], seen); // thread 0 once, thread 1 once, each saw a team of 2
    }

    [LinuxFact]
    public void The_runtime_is_the_one_libtorch_cpu_binds_not_any_libgomp_in_the_process()
    {
        // LibTorch's packages ship their libgomp (with a hashed name) beside libtorch_cpu.so, which loads it from there.
        string? torchCpu = File.ReadLines("/proc/self/maps").Select(l => l.IndexOf('/') is int i and >= 0 ? l[i..] : null)
            .FirstOrDefault(p => p is not null && Path.GetFileName(p) == "libtorch_cpu.so");
        Assert.NotNull(torchCpu);
        Assert.NotNull(OpenMpTeam.Library);
        Assert.StartsWith("libgomp", Path.GetFileName(OpenMpTeam.Library));
        Assert.Equal(Path.GetDirectoryName(torchCpu), Path.GetDirectoryName(OpenMpTeam.Library));
    }

    [LinuxFact]
    public unsafe void An_exception_on_any_team_thread_is_rethrown_to_the_caller_after_the_team_finishes()
    {
        Assert.True(OpenMpTeam.Available, "LibTorch's libgomp was not found in this process");
        for (int thrower = 0; thrower < 2; thrower++)
        {
            var state = new int[3];
            state[2] = thrower;
            var e = Assert.Throws<InvalidOperationException>(() => { fixed (int* p = state) OpenMpTeam.Run(2, &ThrowOn, p); });
            Assert.Equal($"thread {thrower} failed", e.Message);
            Assert.Equal(1, state[1 - thrower]); // the other thread still ran its share before Run returned
        }
        // Both threads throwing: the first is rethrown, and the team still works afterwards.
        var both = new int[3];
        both[2] = -1;
        Assert.Throws<InvalidOperationException>(() => { fixed (int* p = both) OpenMpTeam.Run(2, &ThrowOn, p); });
        var seen = new int[3];
        fixed (int* p = seen) OpenMpTeam.Run(2, &Record, p);
        Assert.Equal([1, 1, 2], seen);
    }

    private static unsafe void Record(void* state, int thread, int threads)
    {
        var seen = (int*)state;
        Interlocked.Increment(ref seen[thread]);
        seen[2] = threads;
    }

    /// <summary>Throws on thread state[2] (every thread when it is -1); the others count themselves in state[thread].</summary>
    private static unsafe void ThrowOn(void* state, int thread, int threads)
    {
        var s = (int*)state;
        if (s[2] == thread || s[2] == -1) throw new InvalidOperationException($"thread {thread} failed");
        Interlocked.Increment(ref s[thread]);
    }
}
