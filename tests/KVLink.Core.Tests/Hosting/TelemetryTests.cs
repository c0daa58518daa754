using KVLink.TestSupport;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Hosting;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace KVLink.Core.Tests.Hosting;

public sealed class TelemetryTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static readonly double[] DurationBounds = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
    private static readonly double[] TtftBounds = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
    private static readonly double[] TpotBounds = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
    private static readonly double[] TokenBounds = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

    /// <summary>Metrics as an OpenTelemetry exporter sees them: the SDK's MeterProvider with the in-memory exporter.</summary>
    private sealed class Exported : IDisposable
    {
        private readonly List<MetricSnapshot> _snapshots = [];
        private readonly MeterProvider _provider;
        private readonly string _engine;

        public Exported(string engine)
        {
            _engine = engine;
            _provider = Sdk.CreateMeterProviderBuilder().AddMeter(KvLinkTelemetry.MeterName).AddInMemoryExporter(_snapshots).Build();
        }

        /// <summary>Collects now (cumulative values) and keeps only this test's engine's points.</summary>
        public Dictionary<string, (MetricSnapshot Metric, List<MetricPoint> Points)> Collect()
        {
            _snapshots.Clear();
            Assert.True(_provider.ForceFlush());
            return _snapshots.GroupBy(m => m.Name).ToDictionary(g => g.Key, g =>
            {
                var last = g.Last();
                var points = new List<MetricPoint>();
                foreach (var p in last.MetricPoints) if (Equals(Tags(p).GetValueOrDefault("kvlink.engine"), _engine)) points.Add(p);
                return (last, points);
            });
        }

        public void Dispose() => _provider.Dispose();
    }

    private static Dictionary<string, object?> Tags(MetricPoint point)
    {
        var tags = new Dictionary<string, object?>();
        foreach (var t in point.Tags) tags[t.Key] = t.Value;
        return tags;
    }

    private static double[] Bounds(MetricPoint point)
    {
        var bounds = new List<double>();
        foreach (var b in point.GetHistogramBuckets()) if (!double.IsPositiveInfinity(b.ExplicitBound)) bounds.Add(b.ExplicitBound);
        return [.. bounds];
    }

    [Fact]
    public async Task Engine_metrics_reach_an_OpenTelemetry_exporter_with_names_units_attributes_and_buckets()
    {
        string name = "otel-" + Guid.NewGuid().ToString("N")[..8];
        using var exported = new Exported(name);
        await using var engine = await fixture.LoadEngineAsync(new MemoryKvCacheStore(), new KvLinkDiagnostics { Name = name });
        string[] ids = [await engine.PrecomputeAsync(CheckpointFixture.Doc(1)), await engine.PrecomputeAsync(CheckpointFixture.Doc(2))];
        // Warm-up: with the default SlotPolicy.Shared, document 2's slot-0 cache serves slot 1 (nothing is encoded on demand).
        var warm = await engine.GenerateAsync("question?", ids);
        var result = await engine.GenerateAsync("question?", ids);
        Assert.True(SpinWait.SpinUntil(() => engine.QueueLength == 0, TimeSpan.FromSeconds(10)));
        CheckCacheMetrics(exported.Collect(), engine, warm, result, await engine.BuildLayoutAsync("q", [], 0));

        await Assert.ThrowsAsync<KeyNotFoundException>(() => engine.GenerateAsync("q", ["doc-missing"]));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => engine.GenerateAsync("question?", ids, cancellationToken: cancelled.Token));
        Assert.True(SpinWait.SpinUntil(() => engine.QueueLength == 0, TimeSpan.FromSeconds(10)));

        var m = exported.Collect();

        // Names and units, GenAI semantic conventions beside the kvlink.* instruments.
        foreach (var (instrument, unit) in new[]
        {
            ("gen_ai.client.operation.duration", "s"), ("gen_ai.server.request.duration", "s"), ("gen_ai.client.token.usage", "{token}"), ("gen_ai.server.time_to_first_token", "s"),
            ("gen_ai.server.time_per_output_token", "s"), ("kvlink.generate.time_to_first_token", "s"), ("kvlink.generate.duration", "s"),
            ("kvlink.precompute.duration", "s"), ("kvlink.cache.hits", "{lookup}"), ("kvlink.cache.misses", "{lookup}"), ("kvlink.cache.bytes_loaded", "By"),
            ("kvlink.tokens.reused", "{token}"), ("kvlink.tokens.computed", "{token}"), ("kvlink.tokens.generated", "{token}"),
            ("kvlink.queue.length", "{request}"), ("kvlink.store.hits", "{lookup}"), ("kvlink.store.writes", "{entry}"), ("kvlink.store.bytes", "By"),
        })
        {
            Assert.True(m.ContainsKey(instrument), $"{instrument} was not exported");
            Assert.Equal(unit, m[instrument].Metric.Unit);
            Assert.NotEmpty(m[instrument].Points);
        }

        // Every histogram carries its bucket advice, so the SDK's default buckets (0, 5, 10, 25... seconds) are not used.
        foreach (var (instrument, bounds) in new[]
        {
            ("gen_ai.client.operation.duration", DurationBounds), ("gen_ai.server.request.duration", DurationBounds), ("gen_ai.server.time_to_first_token", TtftBounds),
            ("gen_ai.server.time_per_output_token", TpotBounds), ("gen_ai.client.token.usage", TokenBounds),
            ("kvlink.generate.time_to_first_token", TtftBounds), ("kvlink.generate.duration", DurationBounds), ("kvlink.precompute.duration", DurationBounds),
        })
            Assert.All(m[instrument].Points, p => Assert.Equal(bounds, Bounds(p)));

        // Successful requests: GenAI attributes; TTFT and per-token times recorded.
        var ok = Assert.Single(m["gen_ai.client.operation.duration"].Points, p => !Tags(p).ContainsKey("error.type"));
        var okTags = Tags(ok);
        Assert.Equal("chat", okTags["gen_ai.operation.name"]);
        Assert.Equal("kvlink", okTags["gen_ai.provider.name"]);
        Assert.Equal(engine.ModelId, okTags["gen_ai.request.model"]);
        Assert.Equal(engine.ModelId, okTags["gen_ai.response.model"]);
        Assert.Equal(2, ok.GetHistogramCount());
        Assert.Equal(warm.Timings.Total.TotalSeconds + result.Timings.Total.TotalSeconds, ok.GetHistogramSum(), 6);
        var serverOk = Assert.Single(m["gen_ai.server.request.duration"].Points, p => !Tags(p).ContainsKey("error.type"));
        Assert.Equal(okTags, Tags(serverOk));
        Assert.Equal(ok.GetHistogramSum(), serverOk.GetHistogramSum(), 9);
        var ttft = Assert.Single(m["gen_ai.server.time_to_first_token"].Points);
        Assert.Equal(warm.Timings.TimeToFirstToken.TotalSeconds + result.Timings.TimeToFirstToken.TotalSeconds, ttft.GetHistogramSum(), 6);
        Assert.Equal(2, Assert.Single(m["kvlink.generate.time_to_first_token"].Points).GetHistogramCount());
        var input = Assert.Single(m["gen_ai.client.token.usage"].Points, p => Equals(Tags(p)["gen_ai.token.type"], "input"));
        Assert.Equal(warm.Usage.PromptTokens + result.Usage.PromptTokens, input.GetHistogramSum());
        var output = Assert.Single(m["gen_ai.client.token.usage"].Points, p => Equals(Tags(p)["gen_ai.token.type"], "output"));
        Assert.Equal(warm.Usage.GeneratedTokens + result.Usage.GeneratedTokens, output.GetHistogramSum());

        // The failed and the cancelled request are in both duration histograms, with error.type (and no response model).
        foreach (var instrument in new[] { "gen_ai.client.operation.duration", "gen_ai.server.request.duration", "kvlink.generate.duration" })
        {
            var failed = Assert.Single(m[instrument].Points, p => Equals(Tags(p).GetValueOrDefault("error.type"), typeof(KeyNotFoundException).FullName));
            Assert.Equal(1, failed.GetHistogramCount());
            var cancel = Assert.Single(m[instrument].Points, p => Tags(p).GetValueOrDefault("error.type") is string t
                && typeof(OperationCanceledException).IsAssignableFrom(typeof(OperationCanceledException).Assembly.GetType(t)));
            Assert.Equal(1, cancel.GetHistogramCount());
            Assert.False(Tags(cancel).ContainsKey("gen_ai.response.model"));
        }
        Assert.All(m["gen_ai.server.time_to_first_token"].Points, p => Assert.False(Tags(p).ContainsKey("error.type")));

    }

    private static void CheckCacheMetrics(Dictionary<string, (MetricSnapshot Metric, List<MetricPoint> Points)> m, KvLinkEngine engine,
        KVLink.Core.Generation.GenerationResult warm, KVLink.Core.Generation.GenerationResult result, KVLink.Core.Prompting.PromptLayout empty)
    {
        // The engine's view of its store, and the store's own tier metrics (observed from its statistics).
        long perToken = 2L * 2 /*layers*/ * 2 /*kv heads*/ * 16 /*head dim*/ * 4 /*fp32*/;
        long Sum(string instrument) { long s = 0; foreach (var p in m[instrument].Points) s += p.GetSumLong(); return s; }
        int prefix = empty.PrefixLength;
        Assert.Equal(4, Sum("kvlink.cache.hits")); // warm-up and measured request: both documents, from their one cache each
        Assert.Equal(2, Sum("kvlink.cache.misses")); // the two precomputes
        Assert.Equal((warm.Usage.CachedTokens - prefix + result.Usage.CachedTokens - prefix) * perToken, Sum("kvlink.cache.bytes_loaded"));
        Assert.Equal(warm.Usage.CachedTokens + result.Usage.CachedTokens, Sum("kvlink.tokens.reused"));
        var stats = engine.Store.Statistics;
        var storeHits = Assert.Single(m["kvlink.store.hits"].Points);
        Assert.Equal("memory", Tags(storeHits)["kvlink.cache.tier"]);
        Assert.Equal(stats.Hits, storeHits.GetSumLong());
        Assert.Equal(4, stats.Hits);
        Assert.Equal(stats.Misses, Sum("kvlink.store.misses"));
        Assert.Equal(2, Sum("kvlink.store.writes")); // the two precomputes: one cache per document
        Assert.Equal(stats.Bytes, Assert.Single(m["kvlink.store.bytes"].Points).GetSumLong());
        Assert.Equal(0, Assert.Single(m["kvlink.queue.length"].Points).GetGaugeLastValueLong());
    }

    [Fact]
    public async Task Every_store_reports_its_tier_memory_file_distributed_and_the_tiered_view()
    {
        string name = "tiers-" + Guid.NewGuid().ToString("N")[..8];
        using var folder = new TempFolder();
        var memory = new MemoryKvCacheStore();
        var file = new FileKvCacheStore(Path.Combine(folder.Path, "store"));
        var distributed = new DistributedCacheKvCacheStore(new DictionaryCache());
        var tiered = new TieredKvCacheStore(memory, file, distributed);
        using var exported = new Exported(name);
        await using var engine = await fixture.LoadEngineAsync(tiered, new KvLinkDiagnostics { Name = name });
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(3));
        await memory.RemoveAsync(engine.CacheKey(id, 0)); // the next read misses memory and is answered by the file tier
        await engine.GenerateAsync("question?", [id]);

        var m = exported.Collect();
        var byTier = m["kvlink.store.hits"].Points.ToDictionary(p => (string)Tags(p)["kvlink.cache.tier"]!, p => p.GetSumLong());
        Assert.Equal(new[] { "distributed", "file", "memory", "tiered" }, byTier.Keys.Order());
        Assert.Equal((tiered.Statistics.Hits, memory.Statistics.Hits, file.Statistics.Hits, distributed.Statistics.Hits),
            (byTier["tiered"], byTier["memory"], byTier["file"], byTier["distributed"]));
        Assert.True(byTier["file"] >= 1);
        var writes = m["kvlink.store.writes"].Points.ToDictionary(p => (string)Tags(p)["kvlink.cache.tier"]!, p => p.GetSumLong());
        Assert.Equal(distributed.Statistics.Writes, writes["distributed"]);
        Assert.True(writes["distributed"] >= 1);
        Assert.Equal(memory.Statistics.Removals, m["kvlink.store.removals"].Points.Single(p => Equals(Tags(p)["kvlink.cache.tier"], "memory")).GetSumLong());
        Assert.Equal("redis", KvLinkInstruments.TierOf(new RedisKvCacheStore()));
    }

    [Fact]
    public async Task Engines_from_the_container_record_on_its_meter_factory()
    {
        var services = new ServiceCollection();
        var factory = new RecordingMeterFactory();
        services.AddSingleton<IMeterFactory>(factory);
        services.AddKvLink(fixture.Configure);
        await using var sp = services.BuildServiceProvider();
        var engine = sp.GetRequiredService<KvLinkEngine>();
        Assert.Contains(factory.Meters, meter => meter.Name == KvLinkTelemetry.MeterName);
        // One set of instruments per factory, however many engines use it.
        Assert.Same(KvLinkInstruments.For(factory), KvLinkInstruments.For(factory));
        Assert.Same(factory.Meters.Single(), KvLinkInstruments.For(factory).Meter);
        GC.KeepAlive(engine);
    }

    private sealed class RecordingMeterFactory : IMeterFactory
    {
        public List<Meter> Meters { get; } = [];
        public Meter Create(MeterOptions options) { var meter = new Meter(options); Meters.Add(meter); return meter; }
        public void Dispose() { foreach (var meter in Meters) meter.Dispose(); }
    }

    /// <summary>Stands in for RedisKvCacheStore's type name (a custom store's tier is its type name without "KvCacheStore").</summary>
    private sealed class RedisKvCacheStore : NullStore;

    private abstract class NullStore : IKvCacheStore
    {
        public KvCacheStoreStatistics Statistics => default;
        public ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken ct = default) => ValueTask.FromResult<DocumentKvCache?>(null);
        public ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken ct = default) => ValueTask.CompletedTask;
        public ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken ct = default) => ValueTask.FromResult(false);
        public ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken ct = default) => ValueTask.FromResult(false);
        public ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken ct = default) => ValueTask.FromResult(0L);
    }

    /// <summary>An in-process <see cref="IDistributedCache"/> (what a Redis or SQL cache looks like to the store).</summary>
    private sealed class DictionaryCache : IDistributedCache
    {
        private readonly ConcurrentDictionary<string, byte[]> _items = new();
        public byte[]? Get(string key) => _items.GetValueOrDefault(key);
        public Task<byte[]?> GetAsync(string key, CancellationToken token = default) => Task.FromResult(Get(key));
        public void Set(string key, byte[] value, DistributedCacheEntryOptions options) => _items[key] = value;
        public Task SetAsync(string key, byte[] value, DistributedCacheEntryOptions options, CancellationToken token = default) { Set(key, value, options); return Task.CompletedTask; }
        public void Refresh(string key) { }
        public Task RefreshAsync(string key, CancellationToken token = default) => Task.CompletedTask;
        public void Remove(string key) => _items.TryRemove(key, out _);
        public Task RemoveAsync(string key, CancellationToken token = default) { Remove(key); return Task.CompletedTask; }
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
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(4));
        var result = await engine.GenerateAsync("question?", [id]);
        await foreach (var _ in engine.GenerateStreamingAsync("question?", [id])) { }
        await Assert.ThrowsAsync<KeyNotFoundException>(() => engine.GenerateAsync("q", ["doc-missing"]));

        var precompute = Assert.Single(stopped, a => a.OperationName == "kvlink.precompute");
        Assert.Equal(id, precompute.GetTagItem("kvlink.document.id"));
        int prefix = (await engine.BuildLayoutAsync("q", [], 0)).PrefixLength;
        Assert.Equal(result.Usage.CachedTokens - prefix, precompute.GetTagItem("kvlink.tokens.computed"));

        // Generation spans follow the GenAI conventions: "chat {model}", gen_ai.* request, response and usage attributes.
        var generates = stopped.Where(a => a.OperationName != "kvlink.precompute").ToList();
        Assert.Equal(3, generates.Count);
        Assert.All(generates, a =>
        {
            Assert.Equal($"chat {engine.ModelId}", a.DisplayName);
            Assert.Equal("chat", a.GetTagItem("gen_ai.operation.name"));
            Assert.Equal("kvlink", a.GetTagItem("gen_ai.provider.name"));
            Assert.Equal(engine.ModelId, a.GetTagItem("gen_ai.request.model"));
        });
        var ok = generates.Where(a => a.Status != ActivityStatusCode.Error).ToList();
        Assert.Equal(2, ok.Count);
        Assert.All(ok, a =>
        {
            Assert.Equal(result.Usage.PromptTokens, a.GetTagItem("gen_ai.usage.input_tokens"));
            Assert.Equal(result.Usage.GeneratedTokens, a.GetTagItem("gen_ai.usage.output_tokens"));
            Assert.Equal(new[] { result.FinishReason == FinishReason.Stop ? "stop" : "length" }, Assert.IsType<string[]>(a.GetTagItem("gen_ai.response.finish_reasons")));
            Assert.Equal(engine.Options.Generation.MaxNewTokens, a.GetTagItem("gen_ai.request.max_tokens"));
            Assert.Equal(engine.ModelId, a.GetTagItem("gen_ai.response.model"));
            Assert.Equal(result.Usage.CachedTokens, a.GetTagItem("kvlink.tokens.reused"));
            Assert.Equal(result.Usage.ComputedTokens, a.GetTagItem("kvlink.tokens.computed"));
            Assert.Null(a.GetTagItem("kvlink.tokens.prompt"));   // replaced by gen_ai.usage.input_tokens
        });
        Assert.Contains(ok, a => Equals(a.GetTagItem("kvlink.streaming"), true));
        var failed = Assert.Single(generates, a => a.Status == ActivityStatusCode.Error);
        Assert.Equal(typeof(KeyNotFoundException).FullName, failed.GetTagItem("error.type"));
        Assert.Null(failed.GetTagItem("gen_ai.usage.output_tokens"));
    }

    [Fact]
    public async Task A_stream_cancelled_or_abandoned_after_its_first_token_records_one_duration_with_the_cancellation_as_error_type()
    {
        string name = "stream-" + Guid.NewGuid().ToString("N")[..8];
        using var exported = new Exported(name);
        await using var engine = await fixture.LoadEngineAsync(new MemoryKvCacheStore(), new KvLinkDiagnostics { Name = name });
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(8));
        var options = new Core.Generation.GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] }; // no stop: a first token, then more

        // Cancelled by the caller after the first token.
        using var cancel = new CancellationTokenSource();
        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var update in engine.GenerateStreamingAsync("question?", [id], options, cancel.Token))
            {
                Assert.Null(update.Result);
                seen++;
                await cancel.CancelAsync();
            }
        });
        Assert.Equal(1, seen);
        // Abandoned: the consumer stops reading after the first token (the enumerator is disposed, nothing is cancelled).
        await foreach (var update in engine.GenerateStreamingAsync("question?", [id], options))
        {
            Assert.Null(update.Result);
            break;
        }
        Assert.True(SpinWait.SpinUntil(() => engine.QueueLength == 0, TimeSpan.FromSeconds(10)));

        var m = exported.Collect();
        foreach (var instrument in new[] { "gen_ai.client.operation.duration", "kvlink.generate.duration" })
        {
            var point = Assert.Single(m[instrument].Points);
            Assert.Equal(typeof(OperationCanceledException).FullName, Tags(point)["error.type"]);
            Assert.Equal(2, point.GetHistogramCount());
        }
    }

    [Fact]
    public async Task Engine_logs_through_source_generated_messages()
    {
        var logger = new ListLogger();
        await using var engine = await fixture.LoadEngineAsync(diagnostics: new KvLinkDiagnostics { Logger = logger, Name = "logged" });
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(5));
        await engine.GenerateAsync("question?", [id]);

        Assert.Contains(logger.Entries, e => e.Id == 1 && e.Message.Contains("'logged' ready", StringComparison.Ordinal));
        Assert.Contains(logger.Entries, e => e.Id == 2 && e.Message.Contains(id, StringComparison.Ordinal));
        Assert.Contains(logger.Entries, e => e.Id == 3 && e.Level == LogLevel.Debug);
    }
}
