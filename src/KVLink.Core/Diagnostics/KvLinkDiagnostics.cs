using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace KVLink.Core.Diagnostics;

/// <summary>
/// Where one KVLink engine logs and records metrics; every member may be left unset. The names to subscribe to: every
/// instrument of the library is on the meter <see cref="MeterName"/> and every span on the activity source
/// <see cref="ActivitySourceName"/> (instruments, tags and spans are listed in docs/observability.md). With
/// OpenTelemetry: <c>.WithMetrics(m =&gt; m.AddMeter(KvLinkDiagnostics.MeterName))</c> and
/// <c>.WithTracing(t =&gt; t.AddSource(KvLinkDiagnostics.ActivitySourceName))</c>.
/// </summary>
public sealed class KvLinkDiagnostics
{
    /// <summary>Name of the <see cref="Meter"/> every instrument belongs to.</summary>
    public const string MeterName = "KVLink.Core";

    /// <summary>Name of the <see cref="System.Diagnostics.ActivitySource"/> of precompute, generate and index spans.</summary>
    public const string ActivitySourceName = "KVLink.Core";

    /// <summary>Where the engine logs (precompute, generate, indexing); null logs nothing.</summary>
    public ILogger? Logger { get; init; }

    /// <summary>
    /// The factory of the <see cref="MeterName"/> meter the engine records to (DI's <see cref="IMeterFactory"/>);
    /// null records to a process-wide meter of that name. Either way nothing is measured unless a listener (OpenTelemetry,
    /// <c>dotnet-counters</c>, a <see cref="MeterListener"/>) subscribes to the meter.
    /// </summary>
    public IMeterFactory? MeterFactory { get; init; }

    /// <summary>The engine's name in logs, metric tags and spans (the DI key, or "default").</summary>
    public string Name { get; init; } = "default";
}
