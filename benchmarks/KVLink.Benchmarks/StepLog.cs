using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using KVLink.Core.Diagnostics;

namespace KVLink.Benchmarks;

/// <summary>
/// The rows and duration of every scheduler step while it lives, from the engine's own metrics
/// (<c>kvlink.scheduler.step.tokens</c> and <c>kvlink.scheduler.step.duration</c>, recorded one after the other on the
/// model thread, so the n-th of each belong to the same step). The benchmark runs one engine at a time.
/// </summary>
internal sealed class StepLog : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<int> _rows = new();
    private readonly ConcurrentQueue<double> _seconds = new();
    private readonly ConcurrentQueue<long> _ends = new();

    public StepLog()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == KvLinkTelemetry.MeterName && instrument.Name is "kvlink.scheduler.step.tokens" or "kvlink.scheduler.step.duration")
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<int>((_, value, _, _) => _rows.Enqueue(value));
        _listener.SetMeasurementEventCallback<double>((_, value, _, _) => { _ends.Enqueue(System.Diagnostics.Stopwatch.GetTimestamp()); _seconds.Enqueue(value); });
        _listener.Start();
    }

    /// <summary>Each step so far: its rows and its milliseconds.</summary>
    public (int Rows, double Ms)[] Steps => [.. _rows.Zip(_seconds, (r, s) => (r, s * 1000))];

    /// <summary>When each step ended (<see cref="System.Diagnostics.Stopwatch.GetTimestamp"/>).</summary>
    public long[] Ends => [.. _ends];

    public void Dispose() => _listener.Dispose();
}
