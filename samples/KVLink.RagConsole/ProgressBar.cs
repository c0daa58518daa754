using KVLink.Core.Engine;

namespace KVLink.RagConsole;

/// <summary>
/// A one-line progress bar redrawn in place. Documents are encoded in parallel, so reports arrive from several threads
/// and one computed earlier (2/4) can reach the lock after a later one (4/4): a report behind what is already shown is
/// dropped, so the bar never moves backwards.
/// </summary>
internal sealed class ProgressBar(int total, TextWriter output) : IProgress<KvLinkIndexingProgress>
{
    private readonly Lock _lock = new();
    private int _shown = -1;

    public void Report(KvLinkIndexingProgress p)
    {
        lock (_lock)
        {
            if (p.DocumentsDone <= _shown) return;
            _shown = p.DocumentsDone;
            int width = 30, filled = total == 0 ? width : width * Math.Min(p.DocumentsDone, total) / total;
            output.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {p.DocumentsDone}/{total} documents, {p.Tokens:N0} tokens, {p.Elapsed.TotalSeconds:F1} s ");
        }
    }
}
