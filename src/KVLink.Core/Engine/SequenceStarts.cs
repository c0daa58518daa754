using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Starting the sequences one admission took in: each allocates its cache and places what is known. A burst's placements
/// (a request's stored documents copied and re-rotated, a few dozen small operators each: 3.3 ms for eight on the demo
/// model) run side by side on LibTorch's threads, as a step's groups do, where the sequences allow it. Model thread.
/// </summary>
internal static class SequenceStarts
{
    /// <summary>
    /// Starts the admitted sequences; their exceptions by index. Those that may start on any thread
    /// (<see cref="ScheduledSequence.StartsOnAnyThread"/>) run side by side on LibTorch's OpenMP team where
    /// <paramref name="sideBySide"/> allows (<see cref="StepGroups.SideBySide"/>); the others on the calling thread.
    /// </summary>
    public static Exception?[] All(List<ScheduledSequence> admitted, bool sideBySide)
    {
        var errors = new Exception?[admitted.Count];
        int anyThread = admitted.Count(s => s.StartsOnAnyThread);
        bool side = sideBySide && anyThread > 1;
        if (side)
        {
            // Group g starts the g-th, (g + groups)-th, ... of the sequences that may start on any thread.
            int groups = Math.Min(get_num_threads(), anyThread);
            StepGroups.SideBySide(groups, g =>
            {
                for (int i = 0, k = 0; i < admitted.Count; i++)
                    if (admitted[i].StartsOnAnyThread && k++ % groups == g) errors[i] = TryStart(admitted[i]);
            });
        }
        for (int i = 0; i < admitted.Count; i++)
            if (!side || !admitted[i].StartsOnAnyThread) errors[i] = TryStart(admitted[i]);
        return errors;
    }

    private static Exception? TryStart(ScheduledSequence s)
    {
        try
        {
            // In a scope: whatever a start keeps is detached from it (caches, placements), and its temporaries stay
            // referenced until it ends, so no collection can finalize one while LibTorch still reads it.
            using (NewDisposeScope()) s.Start();
            return null;
        }
        catch (Exception e) { return e; }
    }
}
