using KVLink.Core.Caching;
using KVLink.Core.Engine;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace KVLink.Core.Hosting;

/// <summary>
/// Health of one registered engine: Unhealthy while its model is not loaded (or failed to load) or its store cannot be
/// reached; Healthy otherwise. Data: <c>engine</c>, <c>model</c>, <c>loaded</c>, <c>queue_length</c>, <c>cpu_tier</c>,
/// <c>compute_dtype</c>, <c>compute_dtype_reason</c>, <c>decode_kernel</c>, <c>prompt_kernel</c> (<see cref="KvLinkEngine.RuntimeInfo"/>), <c>store</c>,
/// <c>store_reachable</c>, <c>store_entries</c>. The store is probed with one read of a key no document uses (a miss in
/// its statistics); a read the store answers as unreachable (<see cref="KvCacheStoreStatistics.Unavailable"/>) or one that
/// throws makes the engine unhealthy. The check never loads the model itself.
/// </summary>
internal sealed class KvLinkHealthCheck(KvLinkRegistration registration) : IHealthCheck
{
    private static readonly KvCacheKey Probe = new("kvlink-health", "kvlink-health", "kvlink-health", "kvlink-health-probe", 0);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        string engineName = registration.Name ?? "default";
        var data = new Dictionary<string, object> { ["engine"] = engineName };
        if (registration.Engine is not { } engine)
        {
            data["loaded"] = false;
            return registration.LoadError is { } error
                ? new HealthCheckResult(context.Registration.FailureStatus, $"KVLink engine '{engineName}' failed to load: {error.Message}", error, data)
                : new HealthCheckResult(context.Registration.FailureStatus, $"KVLink engine '{engineName}' is not loaded yet.", null, data);
        }

        data["loaded"] = true;
        data["model"] = engine.ModelId;
        data["queue_length"] = engine.QueueLength;
        var runtime = engine.RuntimeInfo;
        data["cpu_tier"] = runtime.CpuTier;
        data["compute_dtype"] = runtime.ComputeDType.ToString();
        data["compute_dtype_reason"] = runtime.ComputeDTypeReason;
        data["decode_kernel"] = runtime.DecodeKernel;
        data["prompt_kernel"] = runtime.PromptKernel;
        data["attention_kernel"] = runtime.AttentionKernel;
        var store = engine.Store;
        data["store"] = Diagnostics.KvLinkInstruments.TierOf(store);
        try
        {
            long before = store.Statistics.Unavailable;
            using (await store.GetAsync(Probe, cancellationToken).ConfigureAwait(false)) { }
            var after = store.Statistics;
            data["store_entries"] = after.Entries;
            bool reachable = after.Unavailable == before;
            data["store_reachable"] = reachable;
            if (!reachable)
                return new HealthCheckResult(context.Registration.FailureStatus, $"KVLink engine '{engineName}': its store cannot be reached.", null, data);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            data["store_reachable"] = false;
            return new HealthCheckResult(context.Registration.FailureStatus, $"KVLink engine '{engineName}': its store failed: {e.Message}", e, data);
        }
        return HealthCheckResult.Healthy($"KVLink engine '{engineName}' is loaded ({engine.QueueLength} requests queued).", data);
    }
}
