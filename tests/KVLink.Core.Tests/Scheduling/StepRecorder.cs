using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using KVLink.Core.Diagnostics;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>Records, through a real <see cref="MeterListener"/>, the sequences, tokens and duration of every scheduler step of one named engine, and its failed batched steps.</summary>
internal sealed class StepRecorder : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<int> _sequences = new(), _tokens = new();
    private readonly ConcurrentQueue<double> _queueWaits = new(), _durations = new();

    public StepRecorder(string engine)
    {
        Engine = engine;
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == KvLinkDiagnostics.MeterName && instrument.Name.StartsWith("kvlink.scheduler.", StringComparison.Ordinal))
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<int>((instrument, value, tags, _) =>
        {
            if (!Mine(tags)) return;
            if (instrument.Name == "kvlink.scheduler.step.sequences") _sequences.Enqueue(value);
            else if (instrument.Name == "kvlink.scheduler.step.tokens") _tokens.Enqueue(value);
        });
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            if (!Mine(tags)) return;
            if (instrument.Name == "kvlink.scheduler.queue_wait") _queueWaits.Enqueue(value);
            else if (instrument.Name == "kvlink.scheduler.step.duration") _durations.Enqueue(value);
        });
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (Mine(tags) && instrument.Name == "kvlink.scheduler.step.failures") Interlocked.Add(ref _failedSteps, value);
        });
        _listener.Start();
    }

    public string Engine { get; }

    /// <summary>Sequences of each step so far.</summary>
    public int[] Sequences => [.. _sequences];

    /// <summary>Tokens (rows) of each step so far.</summary>
    public int[] Tokens => [.. _tokens];

    /// <summary>Batched steps whose forward threw and whose sequences were rerun one at a time.</summary>
    public long FailedSteps => Interlocked.Read(ref _failedSteps);
    private long _failedSteps;

    /// <summary>Durations of each step so far, in seconds.</summary>
    public double[] Durations => [.. _durations];

    /// <summary>Queue waits of the requests admitted so far, in seconds.</summary>
    public double[] QueueWaits => [.. _queueWaits];

    private bool Mine(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        foreach (var t in tags)
            if (t.Key == "kvlink.engine" && Equals(t.Value, Engine)) return true;
        return false;
    }

    public void Dispose() => _listener.Dispose();
}
