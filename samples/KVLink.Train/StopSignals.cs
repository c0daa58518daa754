using System.Runtime.InteropServices;

namespace KVLink.Train;

/// <summary>
/// Ctrl+C and SIGTERM for the training commands. Once a command watches <see cref="Token"/> (<see cref="Watch"/>: the
/// training phases, which checkpoint), the first signal asks it to stop at its next step boundary, after writing its
/// checkpoint (the command then exits with 130, and the same command resumes); a later SIGTERM is the same request again
/// and changes nothing; a second Ctrl+C ends the process at once. A command that does not watch (eval, accuracy, ...)
/// ends at the first signal, as without this class.
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
    private volatile bool _watched;

    /// <summary>Handles SIGINT and SIGTERM from now until disposed; <paramref name="error"/> gets one line on the first.</summary>
    public StopSignals(TextWriter error)
    {
        _error = error;
        Current = this;
        _registrations = [.. new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM }.Select(s => PosixSignalRegistration.Create(s, c => { if (!Handle(c.Signal)) c.Cancel = true; }))];
    }

    /// <summary>Signalled by the first Ctrl+C or SIGTERM.</summary>
    public CancellationToken Token => _stop.Token;

    /// <summary>The handler of this process (null before one is created): commands reach it through their options.</summary>
    public static StopSignals? Current { get; private set; }

    /// <summary>Says that the running command stops by itself when <see cref="Token"/> is signalled, so a signal need not end the process.</summary>
    public void Watch() => _watched = true;

    /// <summary>Records a signal; returns whether the process should end now (the signal's default action).</summary>
    public bool Handle(PosixSignal signal)
    {
        if (!_watched) return true;
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
        if (Current == this) Current = null;
        foreach (var r in _registrations) r.Dispose();
        _stop.Dispose();
    }
}
