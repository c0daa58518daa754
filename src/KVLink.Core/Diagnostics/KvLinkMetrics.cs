using System.Diagnostics;
using System.Diagnostics.Metrics;
using KVLink.Core.Engine;

namespace KVLink.Core.Diagnostics;

/// <summary>
/// The instruments of the <c>KVLink.Core</c> meter, shared by every engine and store of an application.
/// Engines record latency and token counts; stores report cache hits and misses per tier through
/// <see cref="RecordCacheHit"/> and <see cref="RecordCacheMiss"/>. Instrument names are in docs/observability.md.
/// </summary>
public sealed class KvLinkMetrics : IDisposable
{
    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Lock _gate = new();
    private readonly List<(KvLinkEngine Engine, string Name)> _engines = [];

    /// <summary>Creates the instruments on a meter from <paramref name="meterFactory"/> (DI), or on a meter of its own when null.</summary>
    public KvLinkMetrics(IMeterFactory? meterFactory = null)
    {
        var version = typeof(KvLinkMetrics).Assembly.GetName().Version?.ToString();
        if (meterFactory is not null) _meter = meterFactory.Create(new MeterOptions(KvLinkTelemetry.MeterName) { Version = version });
        else { _meter = new Meter(KvLinkTelemetry.MeterName, version); _ownsMeter = true; }

        TimeToFirstToken = _meter.CreateHistogram<double>("kvlink.generate.time_to_first_token", "s", "Time from the start of a generation request to its first token.");
        GenerateDuration = _meter.CreateHistogram<double>("kvlink.generate.duration", "s", "Total time of a generation request.");
        PrecomputeDuration = _meter.CreateHistogram<double>("kvlink.precompute.duration", "s", "Time to precompute (or find) one document's caches.");
        CacheHits = _meter.CreateCounter<long>("kvlink.cache.hits", "{lookup}", "Document cache lookups answered, per tier.");
        CacheMisses = _meter.CreateCounter<long>("kvlink.cache.misses", "{lookup}", "Document cache lookups not answered, per tier.");
        BytesLoaded = _meter.CreateCounter<long>("kvlink.cache.bytes_loaded", "By", "Bytes of document keys and values loaded from a tier.");
        TokensReused = _meter.CreateCounter<long>("kvlink.tokens.reused", "{token}", "Prompt tokens whose keys/values came from stored caches.");
        TokensComputed = _meter.CreateCounter<long>("kvlink.tokens.computed", "{token}", "Tokens run through the model (prompt tokens of a generation, document tokens of a precompute).");
        TokensGenerated = _meter.CreateCounter<long>("kvlink.tokens.generated", "{token}", "Tokens generated.");
        _meter.CreateObservableGauge("kvlink.queue.length", ObserveQueues, "{request}", "Requests waiting for or using an engine's model thread.");
    }

    /// <summary>The meter.</summary>
    public Meter Meter => _meter;

    internal Histogram<double> TimeToFirstToken { get; }
    internal Histogram<double> GenerateDuration { get; }
    internal Histogram<double> PrecomputeDuration { get; }
    internal Counter<long> CacheHits { get; }
    internal Counter<long> CacheMisses { get; }
    internal Counter<long> BytesLoaded { get; }
    internal Counter<long> TokensReused { get; }
    internal Counter<long> TokensComputed { get; }
    internal Counter<long> TokensGenerated { get; }

    /// <summary>For stores: a lookup in <paramref name="tier"/> found an entry of <paramref name="bytes"/> bytes.</summary>
    public void RecordCacheHit(string tier, long bytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(tier);
        var tag = new KeyValuePair<string, object?>(KvLinkTelemetry.TierTag, tier);
        CacheHits.Add(1, tag);
        if (bytes > 0) BytesLoaded.Add(bytes, tag);
    }

    /// <summary>For stores: a lookup in <paramref name="tier"/> found nothing.</summary>
    public void RecordCacheMiss(string tier)
    {
        ArgumentException.ThrowIfNullOrEmpty(tier);
        CacheMisses.Add(1, new KeyValuePair<string, object?>(KvLinkTelemetry.TierTag, tier));
    }

    /// <summary>Adds an engine to the queue-length gauge until the returned handle is disposed.</summary>
    internal IDisposable Track(KvLinkEngine engine, string name)
    {
        lock (_gate) _engines.Add((engine, name));
        return new Untrack(this, engine);
    }

    private IEnumerable<Measurement<int>> ObserveQueues()
    {
        (KvLinkEngine Engine, string Name)[] engines;
        lock (_gate) engines = [.. _engines];
        foreach (var (engine, name) in engines)
            yield return new Measurement<int>(engine.QueueLength, new KeyValuePair<string, object?>(KvLinkTelemetry.EngineTag, name));
    }

    /// <summary>Disposes the meter when this object created it (not when it came from an <see cref="IMeterFactory"/>).</summary>
    public void Dispose()
    {
        if (_ownsMeter) _meter.Dispose();
    }

    private sealed class Untrack(KvLinkMetrics owner, KvLinkEngine engine) : IDisposable
    {
        public void Dispose()
        {
            lock (owner._gate) owner._engines.RemoveAll(e => ReferenceEquals(e.Engine, engine));
        }
    }
}
