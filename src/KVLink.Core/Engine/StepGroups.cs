using System.Runtime.InteropServices;
using KVLink.Core.Model;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Runs a step of several sequences as groups side by side, one group per LibTorch OpenMP thread, each group's forward
/// on its thread alone, instead of one forward whose every operator spreads over all threads.
/// </summary>
/// <remarks>
/// On a small model a step of many short prompts is hundreds of small operators, and one forward pays for each a team
/// wake-up and barrier, while attention runs one sequence at a time: on the demo model (2 cores) eight prompts of 57 rows
/// took 15.8-19.3 ms as one forward and 7.4-7.9 ms as two groups of four (docs/serving.md, --burst). Inside a group LibTorch's operators, MKL and oneDNN
/// see that they run in a parallel region and stay on their thread, so nothing is oversubscribed. A group re-reads every
/// weight, so a large model splits only where each group has enough rows for its products to be bound by compute, not by
/// memory; and a step splits only where its rows divide evenly, since a group cannot be shared (one long prompt chunk
/// stays one forward over every thread). Groups are contiguous runs of the step's parts, so their outputs concatenate in
/// the step's order; each group's numbers are those of a step of its own sequences.
/// </remarks>
internal static unsafe class StepGroups
{
    /// <summary>
    /// Weights up to this size are re-read per group at any row count (the demo model's are about 2 MB, which stay in the
    /// caches); a threshold chosen, not measured across model sizes. Larger models split only by <see cref="MinRowsPerGroup"/>.
    /// </summary>
    public const long SmallModelBytes = 64L << 20;

    /// <summary>Rows per group from which a larger model's products are compute-bound, so re-reading its weights per group is cheap.</summary>
    public const int MinRowsPerGroup = 64;

    /// <summary>The most the largest group may exceed an even share of the rows by (else one thread would idle while the other works).</summary>
    public const double MaxImbalance = 1.5;

    [ThreadStatic] private static long t_steps;

    /// <summary>Steps this thread has run as groups (tests: which path a step took).</summary>
    public static long StepsOnThisThread => t_steps;

    /// <summary>
    /// The groups a step of parts with <paramref name="rows"/> rows each splits into for <paramref name="threads"/> threads,
    /// as the index of each group's first part, or null where one forward over all threads is the better plan.
    /// </summary>
    public static int[]? Plan(IReadOnlyList<int> rows, int threads, long weightBytes)
    {
        int n = Math.Min(threads, rows.Count);
        if (n < 2) return null;
        long total = 0;
        foreach (int r in rows) total += r;
        // Contiguous groups, each closed once it reaches an even share of what is left.
        var starts = new List<int>(n) { 0 };
        long left = total, taken = 0;
        for (int i = 0; i < rows.Count && starts.Count < n; i++)
        {
            taken += rows[i];
            int groupsLeft = n - starts.Count + 1;
            if (taken * groupsLeft >= left && i + 1 < rows.Count)
            {
                starts.Add(i + 1);
                left -= taken;
                taken = 0;
            }
        }
        if (starts.Count < 2) return null;
        long largest = 0, smallest = long.MaxValue;
        for (int g = 0; g < starts.Count; g++)
        {
            int end = g + 1 < starts.Count ? starts[g + 1] : rows.Count;
            long sum = 0;
            for (int i = starts[g]; i < end; i++) sum += rows[i];
            (largest, smallest) = (Math.Max(largest, sum), Math.Min(smallest, sum));
        }
        if (largest > MaxImbalance * total / starts.Count) return null;
        if (weightBytes > SmallModelBytes && smallest < MinRowsPerGroup) return null;
        return [.. starts];
    }

    /// <summary>Whether this process can run groups at all: on the CPU, with LibTorch's OpenMP team and at least two threads.</summary>
    public static bool Available(Device device) => device.type == TorchSharp.DeviceType.CPU && OpenMpTeam.Available && get_num_threads() >= 2;

    /// <summary>
    /// Runs <paramref name="forward"/>(first part, part count, decoding rows) for each group of <paramref name="starts"/>
    /// over <paramref name="parts"/> parts, the groups side by side on the OpenMP team, and returns their outputs
    /// concatenated along the row axis (1) in group order, or null when no group returned any. The first
    /// <paramref name="decode"/>.Count parts are decoding rows (one row each), so a group gets its share of them.
    /// An exception in any group is rethrown here once every group has finished, with every output released.
    /// </summary>
    public static Tensor? Run(int[] starts, int parts, DecodeRows decode, Func<int, int, DecodeRows, Tensor?> forward)
    {
        t_steps++;
        var outputs = new Tensor?[starts.Length];
        try
        {
            SideBySide(starts.Length, g =>
            {
                int first = starts[g], count = (g + 1 < starts.Length ? starts[g + 1] : parts) - first;
                using var scope = NewDisposeScope();
                outputs[g] = forward(first, count, decode with { Count = Math.Clamp(decode.Count - first, 0, count) })?.DetachFromDisposeScope();
            });
            var some = outputs.Where(o => o is not null).Cast<Tensor>().ToArray();
            return some.Length switch { 0 => null, 1 => some[0].alias(), _ => cat(some, 1) };
        }
        finally
        {
            foreach (var o in outputs) o?.Dispose();
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/>(g) for g in [0, <paramref name="groups"/>) on the OpenMP team, side by side, with the
    /// caller's grad and inference mode and forced decode kernel. An exception in any group is rethrown here once every
    /// group has finished.
    /// </summary>
    public static void SideBySide(int groups, Action<int> body)
    {
        var job = new Job(groups, body, is_grad_enabled(), is_inference_mode_enabled(), DecodeGemv.Forced);
        var handle = GCHandle.Alloc(job);
        try
        {
            OpenMpTeam.Run(groups, &Body, (void*)GCHandle.ToIntPtr(handle));
        }
        finally
        {
            handle.Free();
        }
    }

    private sealed record Job(int Groups, Action<int> Body, bool Grad, bool Inference, DecodeKernel? Kernel);

    /// <summary>A team thread's share: groups thread, thread + threads, ... (one each when the team is as large as asked).</summary>
    private static void Body(void* state, int thread, int threads)
    {
        var job = (Job)GCHandle.FromIntPtr((nint)state).Target!;
        // Grad and inference mode and a test's forced decode kernel are per thread: the team's threads take the caller's.
        using var grad = enable_grad(job.Grad);
        using var inference = job.Inference ? inference_mode() : null;
        using var kernel = DecodeGemv.Carry(job.Kernel);
        for (int g = thread; g < job.Groups; g += threads) job.Body(g);
    }
}
