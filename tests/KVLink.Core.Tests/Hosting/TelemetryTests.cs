using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
using Microsoft.Extensions.Logging;

namespace KVLink.Core.Tests.Hosting;

public sealed class TelemetryTests(HostingFixture fixture) : IClassFixture<HostingFixture>
{
    private sealed record Point(string Instrument, double Value, Dictionary<string, object?> Tags);

    [Fact]
    public async Task Engine_and_memory_store_record_metrics()
    {
        using var metrics = new KvLinkMetrics();
        var points = new ConcurrentQueue<Point>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (ReferenceEquals(i.Meter, metrics.Meter)) l.EnableMeasurementEvents(i); };
        void Add(Instrument i, double v, ReadOnlySpan<KeyValuePair<string, object?>> tags) => points.Enqueue(new(i.Name, v, new(tags.ToArray())));
        listener.SetMeasurementEventCallback<long>((i, v, t, _) => Add(i, v, t));
        listener.SetMeasurementEventCallback<double>((i, v, t, _) => Add(i, v, t));
        listener.SetMeasurementEventCallback<int>((i, v, t, _) => Add(i, v, t));
        listener.Start();

        string name = "metrics-" + Guid.NewGuid().ToString("N")[..8];
        await using var engine = await fixture.LoadEngineAsync(new MemoryKvCacheStore(new() { Metrics = metrics }), new KvLinkDiagnostics { Metrics = metrics, Name = name });
        string[] ids = [await engine.PrecomputeAsync(HostingFixture.Doc(1)), await engine.PrecomputeAsync(HostingFixture.Doc(2))];
        Assert.Equal(2, ((MemoryKvCacheStore)engine.Store).Count);

        IEnumerable<Point> Of(string instrument, string? tier = null) => points.Where(p => p.Instrument == instrument
            && (tier is null || Equals(p.Tags.GetValueOrDefault(KvLinkTelemetry.TierTag), tier)));
        double Sum(string instrument, string? tier = null) => Of(instrument, tier).Sum(p => p.Value);

        // Precompute: two misses in each view, two encodings.
        Assert.Equal(2, Of("kvlink.precompute.duration").Count());
        Assert.Equal(2, Sum("kvlink.cache.misses", KvLinkTelemetry.EngineTier));
        Assert.Equal(2, Sum("kvlink.cache.misses", KvLinkTelemetry.MemoryTier));
        Assert.Equal(0, Sum("kvlink.cache.hits"));
        double precomputed = Of("kvlink.tokens.computed").Where(p => Equals(p.Tags[KvLinkTelemetry.OperationTag], "precompute")).Sum(p => p.Value);
        Assert.True(precomputed > 0);

        // Warm-up: document 2 is encoded for slot 1 on first use (precompute stores slot 0 only).
        await engine.GenerateAsync("question?", ids);
        points.Clear();
        var result = await engine.GenerateAsync("question?", ids);
        // The worker decrements its queue count just after completing the request's task: let it settle.
        Assert.True(SpinWait.SpinUntil(() => engine.QueueLength == 0, TimeSpan.FromSeconds(10)), $"the engine still had {engine.QueueLength} queued items after 10 s");
        listener.RecordObservableInstruments();

        Assert.Single(Of("kvlink.generate.time_to_first_token"));
        Assert.Equal(result.Timings.TimeToFirstToken.TotalSeconds, Of("kvlink.generate.time_to_first_token").Single().Value, 6);
        Assert.Equal(result.Timings.Total.TotalSeconds, Of("kvlink.generate.duration").Single().Value, 6);
        Assert.Equal(name, Of("kvlink.generate.duration").Single().Tags[KvLinkTelemetry.EngineTag]);

        // Both documents now come from the store: two hits in the engine's view and in the memory tier.
        Assert.Equal(2, Sum("kvlink.cache.hits", KvLinkTelemetry.EngineTier));
        Assert.Equal(2, Sum("kvlink.cache.hits", KvLinkTelemetry.MemoryTier));
        Assert.Equal(0, Sum("kvlink.cache.misses"));
        long perToken = 2L * 2 /*layers*/ * 2 /*kv heads*/ * 16 /*head dim*/ * 4 /*fp32*/;
        // Reused tokens include the prompt prefix, which the engine keeps itself; the store served the documents.
        int documentTokens = result.Usage.CachedTokens - (await engine.BuildLayoutAsync("q", [], 0)).PrefixLength;
        Assert.Equal(documentTokens * perToken, Sum("kvlink.cache.bytes_loaded", KvLinkTelemetry.EngineTier));
        Assert.Equal(documentTokens * perToken, Sum("kvlink.cache.bytes_loaded", KvLinkTelemetry.MemoryTier));

        Assert.Equal(result.Usage.CachedTokens, Sum("kvlink.tokens.reused"));
        Assert.Equal(result.Usage.ComputedTokens, Of("kvlink.tokens.computed").Where(p => Equals(p.Tags[KvLinkTelemetry.OperationTag], "generate")).Sum(p => p.Value));
        Assert.Equal(result.Usage.GeneratedTokens, Sum("kvlink.tokens.generated"));

        var queue = Of("kvlink.queue.length").Single(p => Equals(p.Tags[KvLinkTelemetry.EngineTag], name));
        Assert.Equal(0, queue.Value);
    }

    [Fact]
    public async Task Precompute_and_generate_emit_spans()
    {
        string name = "spans-" + Guid.NewGuid().ToString("N")[..8];
        var stopped = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == KvLinkTelemetry.ActivitySourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { if (Equals(a.GetTagItem(KvLinkTelemetry.EngineTag), name)) stopped.Enqueue(a); },
        };
        ActivitySource.AddActivityListener(listener);

        await using var engine = await fixture.LoadEngineAsync(diagnostics: new KvLinkDiagnostics { Name = name });
        string id = await engine.PrecomputeAsync(HostingFixture.Doc(4));
        var result = await engine.GenerateAsync("question?", [id]);
        await foreach (var _ in engine.GenerateStreamingAsync("question?", [id])) { }
        await Assert.ThrowsAsync<KeyNotFoundException>(() => engine.GenerateAsync("q", ["doc-missing"]));

        var precompute = Assert.Single(stopped, a => a.OperationName == "kvlink.precompute");
        Assert.Equal(id, precompute.GetTagItem("kvlink.document.id"));
        int prefix = (await engine.BuildLayoutAsync("q", [], 0)).PrefixLength;
        Assert.Equal(result.Usage.CachedTokens - prefix, precompute.GetTagItem("kvlink.tokens.computed"));
        var generates = stopped.Where(a => a.OperationName == "kvlink.generate").ToList();
        Assert.Equal(3, generates.Count);
        var ok = generates.Where(a => a.Status != ActivityStatusCode.Error).ToList();
        Assert.Equal(2, ok.Count);
        Assert.All(ok, a => Assert.Equal(result.Usage.CachedTokens, a.GetTagItem("kvlink.tokens.reused")));
        Assert.Contains(ok, a => Equals(a.GetTagItem("kvlink.streaming"), true));
        var failed = Assert.Single(generates, a => a.Status == ActivityStatusCode.Error);
        Assert.Equal(typeof(KeyNotFoundException).FullName, failed.GetTagItem("error.type"));
    }

    [Fact]
    public async Task Engine_logs_through_source_generated_messages()
    {
        var logger = new ListLogger();
        await using var engine = await fixture.LoadEngineAsync(diagnostics: new KvLinkDiagnostics { Logger = logger, Name = "logged" });
        string id = await engine.PrecomputeAsync(HostingFixture.Doc(5));
        await engine.GenerateAsync("question?", [id]);

        Assert.Contains(logger.Entries, e => e.Id == 1 && e.Message.Contains("'logged' ready", StringComparison.Ordinal));
        Assert.Contains(logger.Entries, e => e.Id == 2 && e.Message.Contains(id, StringComparison.Ordinal));
        Assert.Contains(logger.Entries, e => e.Id == 3 && e.Level == LogLevel.Debug);
    }

    private sealed class ListLogger : ILogger
    {
        public ConcurrentBag<(int Id, LogLevel Level, string Message)> Entries { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((eventId.Id, logLevel, formatter(state, exception)));
    }
}
