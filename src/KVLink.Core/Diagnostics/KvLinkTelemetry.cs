using System.Diagnostics;

namespace KVLink.Core.Diagnostics;

/// <summary>
/// The names to subscribe to: every instrument of the library is on the meter <see cref="MeterName"/> and every span
/// on the activity source <see cref="ActivitySourceName"/> (instruments, tags and spans are listed in docs/observability.md).
/// With OpenTelemetry: <c>.WithMetrics(m =&gt; m.AddMeter(KvLinkTelemetry.MeterName))</c> and
/// <c>.WithTracing(t =&gt; t.AddSource(KvLinkTelemetry.ActivitySourceName))</c>.
/// </summary>
public static class KvLinkTelemetry
{
    /// <summary>Name of the <see cref="System.Diagnostics.Metrics.Meter"/> every instrument belongs to.</summary>
    public const string MeterName = "KVLink.Core";

    /// <summary>Name of the <see cref="System.Diagnostics.ActivitySource"/> of precompute, generate and index spans.</summary>
    public const string ActivitySourceName = "KVLink.Core";

    /// <summary>The activity source (spans <c>kvlink.precompute</c>, <c>kvlink.generate</c>, <c>kvlink.index</c>).</summary>
    internal static ActivitySource ActivitySource { get; } = new(ActivitySourceName, typeof(KvLinkTelemetry).Assembly.GetName().Version?.ToString());

    /// <summary>Tag: the engine's name (the DI key, or "default").</summary>
    internal const string EngineTag = "kvlink.engine";
    /// <summary>Tag of store metrics: the store (tier) reporting ("memory", "file", "tiered", "distributed", "redis", ...).</summary>
    internal const string TierTag = "kvlink.cache.tier";
    /// <summary>Tag: the operation that computed tokens ("precompute" or "generate").</summary>
    internal const string OperationTag = "kvlink.operation";
    /// <summary>Tag: the context mode of a generation ("KvLink" or "FullPrefill").</summary>
    internal const string ModeTag = "kvlink.mode";
    /// <summary>Tag (OpenTelemetry semantic conventions): the exception type a failed operation ended with.</summary>
    internal const string ErrorTypeTag = "error.type";
}
