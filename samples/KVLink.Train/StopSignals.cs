using System.Runtime.InteropServices;

namespace KVLink.Train;

/// <summary>
/// Ctrl+C and SIGTERM for the training commands. The first asks the running command to stop at its next step boundary,
/// after writing its checkpoint (the command then exits with 130, and the same command resumes). A later SIGTERM is the
/// same request again and changes nothing; a second Ctrl+C ends the process at once.
/// </summary>
/// <remarks>
/// This replaces System.CommandLine's own handling (<c>InvocationConfiguration.ProcessTerminationTimeout</c>), which ends the
/// process two seconds after the first signal, before a long step can finish and checkpoint (a 1B-shape step takes minutes),
/// and which throws from its signal handler on a second signal, ending the process with an unhandled exception and no
/// checkpoint (seen with <c>timeout</c> forwarding a SIGTERM that the process had also received).
/// </remarks>
public sealed class StopSignals : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly TextWriter _error;
    private readonly PosixSignalRegistration[] _registrations;
    private int _signals;

    /// <summary>Handles SIGINT and SIGTERM from now until disposed; <paramref name="error"/> gets one line on the first.</summary>
    public StopSignals(TextWriter error)
    {
        _error = error;
        _registrations = [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM }.Select(s => PosixSignalRegistration.Create(s, c => c.Cancel = !Handle(c.Signal)))];
    }

    /// <summary>Signalled by the first Ctrl+C or SIGTERM.</summary>
    public CancellationToken Token => _stop.Token;

    /// <summary>Records a signal; returns whether the process should end now (the signal's default action).</summary>
    public bool Handle(PosixSignal signal)
    {
        if (Interlocked.Increment(ref _signals) == 1)
        {
            _error.WriteLine("Stopping at the next step boundary, after a checkpoint; Ctrl+C again ends the process now.");
            _stop.Cancel();
            return false;
        }
        return signal == PosixSignal.SIGINT;
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _stop.Dispose();
    }
}
