using Microsoft.Extensions.Logging;

namespace KVLink.Core.Diagnostics;

/// <summary>Optional logging and metrics for a <see cref="Engine.KvLinkEngine"/>; every member may be left unset.</summary>
public sealed class KvLinkDiagnostics
{
    /// <summary>Where the engine logs (precompute, generate, indexing); null logs nothing.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Instruments the engine records to; null records nothing (spans are still emitted to listeners).</summary>
    public KvLinkMetrics? Metrics { get; init; }

    /// <summary>The engine's name in logs, metric tags and spans (the DI key, or "default").</summary>
    public string Name { get; init; } = "default";
}
