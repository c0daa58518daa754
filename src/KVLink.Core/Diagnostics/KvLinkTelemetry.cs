using System.Diagnostics;

namespace KVLink.Core.Diagnostics;

/// <summary>Names of the library's meter, activity source, instruments and tags (see docs/observability.md).</summary>
public static class KvLinkTelemetry
{
    /// <summary>Name of the <see cref="System.Diagnostics.Metrics.Meter"/> every instrument belongs to.</summary>
    public const string MeterName = "KVLink.Core";

    /// <summary>Name of the <see cref="System.Diagnostics.ActivitySource"/> of precompute and generate spans.</summary>
    public const string ActivitySourceName = "KVLink.Core";

    /// <summary>The activity source (spans <c>kvlink.precompute</c>, <c>kvlink.generate</c>, <c>kvlink.index</c>).</summary>
    public static ActivitySource ActivitySource { get; } = new(ActivitySourceName, typeof(KvLinkTelemetry).Assembly.GetName().Version?.ToString());

    /// <summary>Tag: the engine's name (the DI key, or "default").</summary>
    public const string EngineTag = "kvlink.engine";
    /// <summary>Tag: the cache tier that answered a lookup ("store" for the engine's view of its store, "memory", ...).</summary>
    public const string TierTag = "kvlink.cache.tier";
    /// <summary>Tag: the operation that computed tokens ("precompute" or "generate").</summary>
    public const string OperationTag = "kvlink.operation";
    /// <summary>Tag: the context mode of a generation ("KvLink" or "FullPrefill").</summary>
    public const string ModeTag = "kvlink.mode";

    /// <summary>The tier name the engine reports its own store lookups under.</summary>
    public const string EngineTier = "store";
    /// <summary>The tier name <see cref="Caching.MemoryKvCacheStore"/> reports under.</summary>
    public const string MemoryTier = "memory";
}
