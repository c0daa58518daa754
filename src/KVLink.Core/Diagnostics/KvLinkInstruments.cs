using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using KVLink.Core.Caching;

namespace KVLink.Core.Diagnostics;

/// <summary>
/// The instruments of the <see cref="KvLinkTelemetry.MeterName"/> meter: one set per <see cref="IMeterFactory"/> (or one
/// process-wide set), shared by every engine created with it. Engines push latency and token measurements; stores are
/// observed through <see cref="IKvCacheStore.Statistics"/>, so every store (memory, file, tiered, distributed, Redis, a
/// custom one) reports its tier without any wiring of its own. Every histogram carries explicit bucket advice.
/// </summary>
internal sealed class KvLinkInstruments
{
    private static readonly ConditionalWeakTable<IMeterFactory, KvLinkInstruments> ByFactory = new();
    private static readonly Lazy<KvLinkInstruments> Shared = new(() => new KvLinkInstruments(null));

    // OpenTelemetry GenAI semantic conventions: names, attributes and the bucket boundaries they recommend.
    public const string GenAiOperationName = "gen_ai.operation.name";
    public const string GenAiProviderName = "gen_ai.provider.name";
    public const string GenAiRequestModel = "gen_ai.request.model";
    public const string GenAiResponseModel = "gen_ai.response.model";
    public const string GenAiTokenType = "gen_ai.token.type";
    public const string GenAiRequestMaxTokens = "gen_ai.request.max_tokens";
    public const string GenAiRequestTemperature = "gen_ai.request.temperature";
    public const string GenAiRequestTopP = "gen_ai.request.top_p";
    public const string GenAiRequestTopK = "gen_ai.request.top_k";
    public const string GenAiRequestSeed = "gen_ai.request.seed";
    public const string GenAiUsageInputTokens = "gen_ai.usage.input_tokens";
    public const string GenAiUsageOutputTokens = "gen_ai.usage.output_tokens";
    public const string GenAiResponseFinishReasons = "gen_ai.response.finish_reasons";
    public const string GenAiConversationId = "gen_ai.conversation.id";
    public const string Provider = "kvlink";
    public const string ChatOperation = "chat";

    /// <summary>gen_ai.client.operation.duration (and KVLink's request durations): 10 ms to 82 s, doubling.</summary>
    public static readonly double[] DurationBuckets = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
    /// <summary>gen_ai.server.time_to_first_token: 1 ms to 10 s.</summary>
    public static readonly double[] TimeToFirstTokenBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
    /// <summary>gen_ai.server.time_per_output_token: 10 ms to 2.5 s.</summary>
    public static readonly double[] TimePerOutputTokenBuckets = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
    /// <summary>gen_ai.client.token.usage: 1 to 67M tokens, times 4.</summary>
    public static readonly long[] TokenBuckets = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

    /// <summary>Sequences per step: 1, 2, 4 ... 256.</summary>
    public static readonly int[] StepBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256];
    /// <summary>Step durations: 1 ms to 8.2 s, doubling (a decode step of a small model to a long prompt chunk of a large one).</summary>
    public static readonly double[] StepDurationBuckets = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
    /// <summary>Tokens per step: 1, 2, 4 ... 8192.</summary>
    public static readonly int[] StepTokenBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

    private readonly Lock _gate = new();
    private readonly List<Tracked> _engines = [];

    /// <summary>What is observed of one engine: its queue and its store (the engine itself stays unknown here, so Diagnostics does not depend on Engine).</summary>
    private sealed record Tracked(object Owner, Func<int> QueueLength, Func<int> Running, Func<int> Queued, IKvCacheStore Store, string Name);

    private KvLinkInstruments(IMeterFactory? meterFactory)
    {
        var version = typeof(KvLinkInstruments).Assembly.GetName().Version?.ToString();
        Meter = meterFactory is not null
            ? meterFactory.Create(new MeterOptions(KvLinkTelemetry.MeterName) { Version = version })
            : new Meter(KvLinkTelemetry.MeterName, version);

        TimeToFirstToken = Seconds("kvlink.generate.time_to_first_token", "Time from the start of a successful generation request to its first token.", TimeToFirstTokenBuckets);
        GenerateDuration = Seconds("kvlink.generate.duration", "Total time of a generation request, failed and cancelled ones included (with error.type).", DurationBuckets);
        PrecomputeDuration = Seconds("kvlink.precompute.duration", "Time to precompute (or find) one document's caches, failed ones included (with error.type).", DurationBuckets);
        CacheHits = Meter.CreateCounter<long>("kvlink.cache.hits", "{lookup}", "Document cache lookups the engine's store answered.");
        CacheMisses = Meter.CreateCounter<long>("kvlink.cache.misses", "{lookup}", "Document cache lookups the engine's store did not answer (the document is encoded).");
        BytesLoaded = Meter.CreateCounter<long>("kvlink.cache.bytes_loaded", "By", "Bytes of document keys and values the engine loaded from its store for requests.");
        TokensReused = Meter.CreateCounter<long>("kvlink.tokens.reused", "{token}", "Prompt tokens whose keys/values came from stored caches.");
        TokensComputed = Meter.CreateCounter<long>("kvlink.tokens.computed", "{token}", "Tokens run through the model (prompt tokens of a generation, document tokens of a precompute).");
        TokensGenerated = Meter.CreateCounter<long>("kvlink.tokens.generated", "{token}", "Tokens generated.");
        Meter.CreateObservableGauge("kvlink.queue.length", () => Observe(e => e.QueueLength()), "{request}", "Requests waiting for or using an engine's model thread.");
        Meter.CreateObservableGauge("kvlink.scheduler.running", () => Observe(e => e.Running()), "{sequence}", "Sequences (requests and document encodes) in an engine's running batch.");
        Meter.CreateObservableGauge("kvlink.scheduler.queued", () => Observe(e => e.Queued()), "{sequence}", "Sequences waiting for admission to an engine's running batch.");
        StepSequences = Meter.CreateHistogram("kvlink.scheduler.step.sequences", "{sequence}", "Sequences in one batched forward step.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = StepBuckets });
        StepTokens = Meter.CreateHistogram("kvlink.scheduler.step.tokens", "{token}", "Tokens (rows) in one batched forward step.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = StepTokenBuckets });
        StepDuration = Seconds("kvlink.scheduler.step.duration",
            "Time of one batched forward step: every running request waits at least this long for its next token.", StepDurationBuckets);
        FailedSteps = Meter.CreateCounter<long>("kvlink.scheduler.step.failures", "{step}",
            "Batched forward steps that threw and were rerun one sequence at a time, so that only the sequences whose own forward fails get the error.");
        QueueWait = Seconds("kvlink.scheduler.queue_wait", "Time a generation request waited for admission to the running batch.", TimeToFirstTokenBuckets);

        OperationDuration = Seconds("gen_ai.client.operation.duration", "GenAI operation duration.", DurationBuckets);
        TokenUsage = Meter.CreateHistogram("gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = TokenBuckets });
        ServerRequestDuration = Seconds("gen_ai.server.request.duration", "Generative AI server request duration such as time-to-last byte or last output token.", DurationBuckets);
        ServerTimeToFirstToken = Seconds("gen_ai.server.time_to_first_token", "Time to generate first token for successful responses.", TimeToFirstTokenBuckets);
        ServerTimePerOutputToken = Seconds("gen_ai.server.time_per_output_token", "Time per output token generated after the first token for successful responses.", TimePerOutputTokenBuckets);

        StoreCounter("hits", "{lookup}", "Reads a store answered.", s => s.Hits);
        StoreCounter("misses", "{lookup}", "Reads a store did not answer (rejected and unreachable ones included).", s => s.Misses);
        StoreCounter("rejected", "{lookup}", "Reads that found an entry but refused it (corrupt, truncated, foreign, outdated).", s => s.Rejected);
        StoreCounter("unavailable", "{lookup}", "Reads answered as a miss because the store could not be reached or read.", s => s.Unavailable);
        StoreCounter("writes", "{entry}", "Entries a store wrote.", s => s.Writes);
        StoreCounter("failed_writes", "{entry}", "Writes a store skipped because it could not take them.", s => s.FailedWrites);
        StoreCounter("evictions", "{entry}", "Entries dropped (or refused) to respect a budget.", s => s.Evictions);
        StoreCounter("removals", "{entry}", "Entries removed or invalidated on request.", s => s.Removals);
        StoreCounter("bytes_read", "By", "Bytes of entries a store returned.", s => s.BytesRead);
        StoreCounter("bytes_written", "By", "Bytes of entries a store wrote.", s => s.BytesWritten);
        Meter.CreateObservableUpDownCounter("kvlink.store.entries", () => ObserveStores(s => s.Entries), "{entry}", "Entries a store holds now.");
        Meter.CreateObservableUpDownCounter("kvlink.store.bytes", () => ObserveStores(s => s.Bytes), "By", "Bytes a store holds now.");
    }

    /// <summary>The instruments on <paramref name="meterFactory"/>'s meter, or on the process-wide meter when null.</summary>
    public static KvLinkInstruments For(IMeterFactory? meterFactory) =>
        meterFactory is null ? Shared.Value : ByFactory.GetValue(meterFactory, f => new KvLinkInstruments(f));

    public Meter Meter { get; }
    public Histogram<double> TimeToFirstToken { get; }
    public Histogram<double> GenerateDuration { get; }
    public Histogram<double> PrecomputeDuration { get; }
    public Counter<long> CacheHits { get; }
    public Counter<long> CacheMisses { get; }
    public Counter<long> BytesLoaded { get; }
    public Counter<long> TokensReused { get; }
    public Counter<long> TokensComputed { get; }
    public Counter<long> TokensGenerated { get; }
    public Histogram<double> OperationDuration { get; }
    public Histogram<long> TokenUsage { get; }
    public Histogram<double> ServerRequestDuration { get; }
    public Histogram<double> ServerTimeToFirstToken { get; }
    public Histogram<double> ServerTimePerOutputToken { get; }
    public Histogram<int> StepSequences { get; }
    public Histogram<int> StepTokens { get; }
    public Histogram<double> StepDuration { get; }
    public Counter<long> FailedSteps { get; }
    public Histogram<double> QueueWait { get; }

    /// <summary>The store tier name of <paramref name="store"/>: "memory", "file", "tiered", "distributed", or the type name without "KvCacheStore", lower case ("redis").</summary>
    public static string TierOf(IKvCacheStore store) => store switch
    {
        MemoryKvCacheStore => "memory",
        FileKvCacheStore => "file",
        TieredKvCacheStore => "tiered",
        DistributedCacheKvCacheStore => "distributed",
        _ => store.GetType().Name.Replace("KvCacheStore", "", StringComparison.Ordinal).ToLowerInvariant(),
    };

    /// <summary>Adds an engine (its queue and its store, with the tiers of a tiered store) to the observed instruments until the handle is disposed.</summary>
    public IDisposable Track(object owner, Func<int> queueLength, Func<int> running, Func<int> queued, IKvCacheStore store, string name)
    {
        lock (_gate) _engines.Add(new Tracked(owner, queueLength, running, queued, store, name));
        return new Untrack(this, owner);
    }

    private Histogram<double> Seconds(string name, string description, double[] buckets) =>
        Meter.CreateHistogram(name, "s", description, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = buckets });

    private void StoreCounter(string name, string unit, string description, Func<KvCacheStoreStatistics, long> value) =>
        Meter.CreateObservableCounter("kvlink.store." + name, () => ObserveStores(value), unit, description);

    private Tracked[] Engines()
    {
        lock (_gate) return [.. _engines];
    }

    private IEnumerable<Measurement<int>> Observe(Func<Tracked, int> value)
    {
        foreach (var engine in Engines())
            yield return new Measurement<int>(value(engine), new KeyValuePair<string, object?>(KvLinkTelemetry.EngineTag, engine.Name));
    }

    /// <summary>One measurement per (engine, tier): a store shared by several engines counts once, under the first engine's name.</summary>
    private List<Measurement<long>> ObserveStores(Func<KvCacheStoreStatistics, long> value)
    {
        var seen = new HashSet<IKvCacheStore>(ReferenceEqualityComparer.Instance);
        var sums = new Dictionary<(string Engine, string Tier), long>();
        foreach (var engine in Engines())
            Add(engine.Store, engine.Name);
        return [.. sums.Select(kv => new Measurement<long>(kv.Value,
            new KeyValuePair<string, object?>(KvLinkTelemetry.EngineTag, kv.Key.Engine), new KeyValuePair<string, object?>(KvLinkTelemetry.TierTag, kv.Key.Tier)))];

        void Add(IKvCacheStore store, string engine)
        {
            if (!seen.Add(store)) return;
            var key = (engine, TierOf(store));
            sums[key] = sums.GetValueOrDefault(key) + value(store.Statistics);
            if (store is TieredKvCacheStore tiered)
                foreach (var tier in tiered.Tiers) Add(tier, engine);
        }
    }

    private sealed class Untrack(KvLinkInstruments instruments, object owner) : IDisposable
    {
        public void Dispose()
        {
            lock (instruments._gate) instruments._engines.RemoveAll(e => ReferenceEquals(e.Owner, owner));
        }
    }
}
