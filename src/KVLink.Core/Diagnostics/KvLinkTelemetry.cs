using System.Diagnostics;

namespace KVLink.Core.Diagnostics;

/// <summary>
/// The library's activity source and the tags of its instruments and spans; the names to subscribe to are public on
/// <see cref="KvLinkDiagnostics"/> (instruments, tags and spans are listed in docs/observability.md).
/// </summary>
internal static class KvLinkTelemetry
{
    /// <summary>Name of the meter every instrument belongs to (<see cref="KvLinkDiagnostics.MeterName"/>).</summary>
    internal const string MeterName = KvLinkDiagnostics.MeterName;

    /// <summary>Name of the activity source of precompute, generate and index spans (<see cref="KvLinkDiagnostics.ActivitySourceName"/>).</summary>
    internal const string ActivitySourceName = KvLinkDiagnostics.ActivitySourceName;

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
