using System.Runtime.InteropServices;
using KVLink.Train;

namespace KVLink.Core.Tests.Samples;

/// <summary>
/// The training commands' Ctrl+C and SIGTERM (<see cref="StopSignals"/>): the first asks for a checkpointed stop, a repeated
/// SIGTERM changes nothing, a second Ctrl+C ends the process. System.CommandLine's own handler threw on a second signal.
/// </summary>
public sealed class StopSignalsTests
{
    [Fact]
    public void The_first_signal_asks_for_a_stop_a_repeated_SIGTERM_changes_nothing_and_a_second_CtrlC_ends_the_process()
    {
        var error = new StringWriter();
        using var signals = new StopSignals(error);
        signals.Watch(); // a training command: it checkpoints and stops when the token says so
        Assert.False(signals.Token.IsCancellationRequested);

        Assert.False(signals.Handle(PosixSignal.SIGTERM)); // the process goes on, to its next step boundary
        Assert.True(signals.Token.IsCancellationRequested);
        Assert.Contains("Stopping at the next step boundary", error.ToString());
        Assert.False(signals.Handle(PosixSignal.SIGTERM)); // the same request again: no exception, no exit
        Assert.True(signals.Handle(PosixSignal.SIGINT));   // Ctrl+C again: end now
        Assert.Single(error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void A_command_that_does_not_watch_the_token_ends_at_the_first_signal()
    {
        using var signals = new StopSignals(TextWriter.Null);
        Assert.True(signals.Handle(PosixSignal.SIGINT)); // eval, accuracy, ...: nothing would stop them otherwise
        Assert.True(signals.Handle(PosixSignal.SIGTERM));
    }

    [Fact]
    public async Task Real_SIGTERMs_sent_to_this_process_cancel_the_token_and_leave_the_process_running()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var signals = new StopSignals(TextWriter.Null);
        signals.Watch(); // else the first SIGTERM would end this process, as it should for a command that does not stop by itself
        var stopped = new TaskCompletionSource();
        using var registration = signals.Token.Register(() => stopped.TrySetResult());
        Assert.Equal(0, Kill(Environment.ProcessId, 15)); // SIGTERM, twice, as `timeout` forwarding one the process also got
        Assert.Equal(0, Kill(Environment.ProcessId, 15));
        await stopped.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200); // the second signal's handler has run too: this process is still here to see it
        Assert.True(signals.Token.IsCancellationRequested);
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
