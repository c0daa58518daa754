using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace KVLink.Core.Diagnostics;

/// <summary>Where one KVLink engine logs and records metrics; every member may be left unset.</summary>
public sealed class KvLinkDiagnostics
{
    /// <summary>Where the engine logs (precompute, generate, indexing); null logs nothing.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>
    /// The factory of the <see cref="KvLinkTelemetry.MeterName"/> meter the engine records to (DI's <see cref="IMeterFactory"/>);
    /// null records to a process-wide meter of that name. Either way nothing is measured unless a listener (OpenTelemetry,
    /// <c>dotnet-counters</c>, a <see cref="MeterListener"/>) subscribes to the meter.
    /// </summary>
    public IMeterFactory? MeterFactory { get; init; }

    /// <summary>The engine's name in logs, metric tags and spans (the DI key, or "default").</summary>
    public string Name { get; init; } = "default";
}
