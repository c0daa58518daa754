using System.Diagnostics;
using KVLink.Core.Diagnostics;
using KVLink.Core.Generation;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Logging, metrics and spans of one engine, kept apart from the engine's logic. Works on plain numbers
/// only (never tensors), so it may run on any thread.
/// </summary>
internal sealed class EngineTelemetry : IDisposable
{
    private readonly ILogger _logger;
    private readonly KvLinkInstruments _metrics;
    private readonly IDisposable _tracking;
    private readonly KvLinkEngine _engine;
    private readonly KeyValuePair<string, object?> _engineTag;
    private readonly long _bytesPerToken;

    public EngineTelemetry(KvLinkEngine engine, KvLinkDiagnostics? diagnostics)
    {
        Name = diagnostics?.Name ?? "default";
        _engine = engine;
        _logger = diagnostics?.Logger ?? NullLogger.Instance;
        _metrics = KvLinkInstruments.For(diagnostics?.MeterFactory);
        _tracking = _metrics.Track(engine, () => engine.QueueLength, () => engine.RunningSequences, () => engine.QueuedSequences, engine.Store, Name);
        _engineTag = new(KvLinkTelemetry.EngineTag, Name);
        var c = engine.Model.Config;
        long element = engine.Model.DType switch { ScalarType.Float64 => 8, ScalarType.Float32 => 4, _ => 2 };
        _bytesPerToken = 2L * c.NumHiddenLayers * c.NumKeyValueHeads * c.HeadDim * element;
        if (_logger.IsEnabled(LogLevel.Information))
            KvLinkLog.EngineReady(_logger, Name, c.NumHiddenLayers, engine.Model.DType.ToString(), engine.Model.Device.ToString(),
                engine.Options.LinkTokens, engine.Options.Mode.ToString());
        // Once per engine, like llama.cpp's system-info line: what this machine computes with and which kernels were chosen.
        if (_logger.IsEnabled(LogLevel.Information) && engine.RuntimeInfo is { } r)
            KvLinkLog.SystemInfo(_logger, Name, r.CpuModel, r.CpuTier, r.LibTorchCpuCapability, r.OneDnnIsa, r.Threads, r.ComputeDType.ToString(),
                r.ComputeDTypeReason, r.PromptKernel, r.AttentionKernel, r.DecodeKernel);
    }

    public string Name { get; }
    public ILogger Logger => _logger;

    /// <summary>Bytes of keys and values of <paramref name="tokens"/> cached tokens of this model.</summary>
    public long CacheBytes(long tokens) => tokens * _bytesPerToken;

    public Activity? StartPrecompute(string documentId)
    {
        var a = KvLinkTelemetry.ActivitySource.StartActivity("kvlink.precompute", ActivityKind.Internal);
        a?.SetTag(KvLinkTelemetry.EngineTag, Name);
        a?.SetTag("kvlink.document.id", documentId);
        return a;
    }

    /// <summary>
    /// The span of one generation request, named and tagged by the OpenTelemetry GenAI conventions (<c>chat {model}</c>,
    /// <c>gen_ai.*</c>), so GenAI-aware backends show it as a model call; <c>kvlink.*</c> tags carry what the conventions
    /// have no attribute for (documents, cache reuse, context mode).
    /// </summary>
    public Activity? StartGenerate(int documents, bool streaming)
    {
        string model = _engine.ModelId;
        var a = KvLinkTelemetry.ActivitySource.StartActivity($"{KvLinkInstruments.ChatOperation} {model}", ActivityKind.Internal);
        if (a is null) return null;
        a.SetTag(KvLinkInstruments.GenAiOperationName, KvLinkInstruments.ChatOperation);
        a.SetTag(KvLinkInstruments.GenAiProviderName, KvLinkInstruments.Provider);
        a.SetTag(KvLinkInstruments.GenAiRequestModel, model);
        a.SetTag(KvLinkTelemetry.EngineTag, Name);
        a.SetTag("kvlink.documents", documents);
        a.SetTag("kvlink.streaming", streaming);
        return a;
    }

    /// <summary>One batched forward of the scheduler: how many sequences and rows it ran, and how long it took.</summary>
    public void SchedulerStep(int sequences, int tokens, TimeSpan duration)
    {
        _metrics.StepSequences.Record(sequences, _engineTag);
        _metrics.StepTokens.Record(tokens, _engineTag);
        _metrics.StepDuration.Record(duration.TotalSeconds, _engineTag);
    }

    /// <summary>A batched forward threw; its sequences are rerun one at a time.</summary>
    public void SchedulerStepFailed() => _metrics.FailedSteps.Add(1, _engineTag);

    /// <summary>A generation request joined the running batch after waiting <paramref name="wait"/> (from its call).</summary>
    public void Admitted(TimeSpan wait) => _metrics.QueueWait.Record(wait.TotalSeconds, _engineTag);

    public void CacheHit(string id, int slot, int tokens)
    {
        _metrics.CacheHits.Add(1, _engineTag);
        if (tokens > 0) _metrics.BytesLoaded.Add(CacheBytes(tokens), _engineTag);
        if (_logger.IsEnabled(LogLevel.Debug)) KvLinkLog.CacheLookup(_logger, "hit", id, slot, Name);
    }

    /// <summary>A kept conversation cache could not be written to the store (best effort; see SessionPersistence).</summary>
    public void SessionPersistFailed(string sessionKey, Exception error)
    {
        if (_logger.IsEnabled(LogLevel.Warning)) KvLinkLog.SessionPersistFailed(_logger, error, sessionKey, Name);
    }

    /// <summary>A stored entry failed <see cref="CacheEntryCheck"/> (it then also counts as a miss).</summary>
    public void EntryRejected(string id, int slot, string problem)
    {
        if (_logger.IsEnabled(LogLevel.Warning)) KvLinkLog.EntryRejected(_logger, id, slot, Name, problem);
    }

    public void CacheMiss(string id, int slot)
    {
        _metrics.CacheMisses.Add(1, _engineTag);
        if (_logger.IsEnabled(LogLevel.Debug)) KvLinkLog.CacheLookup(_logger, "miss", id, slot, Name);
    }

    public void Precomputed(Activity? activity, string id, TimeSpan elapsed, int tokens, int computed, int slotsComputed)
    {
        activity?.SetTag("kvlink.tokens", tokens);
        activity?.SetTag("kvlink.tokens.computed", computed);
        _metrics.PrecomputeDuration.Record(elapsed.TotalSeconds, _engineTag);
        if (computed > 0) _metrics.TokensComputed.Add(computed, _engineTag, new(KvLinkTelemetry.OperationTag, "precompute"));
        if (_logger.IsEnabled(LogLevel.Debug)) KvLinkLog.Precomputed(_logger, id, Name, elapsed.TotalMilliseconds, slotsComputed);
    }

    public void Generated(Activity? activity, ContextMode mode, GenerationOptions options, int documents, GenerationResult result)
    {
        var u = result.Usage;
        var t = result.Timings;
        if (activity is not null)
        {
            activity.SetTag(KvLinkInstruments.GenAiRequestMaxTokens, options.MaxNewTokens);
            activity.SetTag(KvLinkInstruments.GenAiRequestTemperature, (double)options.Temperature);
            activity.SetTag(KvLinkInstruments.GenAiRequestTopP, (double)options.TopP);
            if (options.TopK > 0) activity.SetTag(KvLinkInstruments.GenAiRequestTopK, (double)options.TopK);
            if (options.Seed is { } seed) activity.SetTag(KvLinkInstruments.GenAiRequestSeed, seed);
            activity.SetTag(KvLinkInstruments.GenAiResponseModel, _engine.ModelId);
            activity.SetTag(KvLinkInstruments.GenAiUsageInputTokens, u.PromptTokens);
            activity.SetTag(KvLinkInstruments.GenAiUsageOutputTokens, u.GeneratedTokens);
            activity.SetTag(KvLinkInstruments.GenAiResponseFinishReasons, new[] { FinishReasonName(result.FinishReason) });
            if (result.ConversationId is { } conversation) activity.SetTag(KvLinkInstruments.GenAiConversationId, conversation);
            activity.SetTag(KvLinkTelemetry.ModeTag, mode.ToString());
            activity.SetTag("kvlink.tokens.reused", u.CachedTokens);
            activity.SetTag("kvlink.tokens.computed", u.ComputedTokens);
            activity.SetTag("kvlink.ttft_ms", t.TimeToFirstToken.TotalMilliseconds);
        }
        var modeTag = new KeyValuePair<string, object?>(KvLinkTelemetry.ModeTag, mode.ToString());
        _metrics.TimeToFirstToken.Record(t.TimeToFirstToken.TotalSeconds, _engineTag, modeTag);
        _metrics.GenerateDuration.Record(t.Total.TotalSeconds, _engineTag, modeTag);
        if (u.CachedTokens > 0) _metrics.TokensReused.Add(u.CachedTokens, _engineTag);
        if (u.ComputedTokens > 0) _metrics.TokensComputed.Add(u.ComputedTokens, _engineTag, new(KvLinkTelemetry.OperationTag, "generate"));
        if (u.GeneratedTokens > 0) _metrics.TokensGenerated.Add(u.GeneratedTokens, _engineTag);

        // OpenTelemetry GenAI semantic conventions (the model answered as a local server and its own client).
        var genAi = GenAiTags(null);
        _metrics.OperationDuration.Record(t.Total.TotalSeconds, genAi);
        _metrics.ServerRequestDuration.Record(t.Total.TotalSeconds, genAi);
        _metrics.ServerTimeToFirstToken.Record(t.TimeToFirstToken.TotalSeconds, genAi);
        if (u.GeneratedTokens > 1)
            _metrics.ServerTimePerOutputToken.Record((t.Total - t.TimeToFirstToken).TotalSeconds / (u.GeneratedTokens - 1), genAi);
        var tokenTags = GenAiTags(null);
        tokenTags.Add(KvLinkInstruments.GenAiTokenType, "input");
        _metrics.TokenUsage.Record(u.PromptTokens, tokenTags);
        tokenTags[^1] = new(KvLinkInstruments.GenAiTokenType, "output");
        _metrics.TokenUsage.Record(u.GeneratedTokens, tokenTags);
        if (_logger.IsEnabled(LogLevel.Debug))
            KvLinkLog.Generated(_logger, u.GeneratedTokens, Name, documents, mode.ToString(), t.TimeToFirstToken.TotalMilliseconds, t.Total.TotalMilliseconds, u.CachedTokens, u.ComputedTokens);
    }

    /// <summary>
    /// Marks the span failed, records the request's duration with <c>error.type</c> and logs; always false so it can sit
    /// in an exception filter. Cancelled requests are recorded too (error.type = the cancellation exception's type), not logged.
    /// </summary>
    public bool GenerateFailed(Activity? activity, Exception e, TimeSpan elapsed)
    {
        Fail(activity, e);
        var error = new KeyValuePair<string, object?>(KvLinkTelemetry.ErrorTypeTag, ErrorType(e));
        _metrics.GenerateDuration.Record(elapsed.TotalSeconds, _engineTag, error);
        var genAi = GenAiTags(error);
        _metrics.OperationDuration.Record(elapsed.TotalSeconds, genAi);
        _metrics.ServerRequestDuration.Record(elapsed.TotalSeconds, genAi);
        if (e is not OperationCanceledException) KvLinkLog.GenerationFailed(_logger, e, Name);
        return false;
    }

    /// <summary>Marks the span failed and records the precompute's duration with <c>error.type</c>; always false (exception filter).</summary>
    public bool PrecomputeFailed(Activity? activity, Exception e, TimeSpan elapsed)
    {
        Fail(activity, e);
        _metrics.PrecomputeDuration.Record(elapsed.TotalSeconds, _engineTag, new(KvLinkTelemetry.ErrorTypeTag, ErrorType(e)));
        return false;
    }

    /// <summary>The GenAI conventions' finish reason: OpenAI's words ("stop", "length").</summary>
    public static string FinishReasonName(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        _ => reason.ToString().ToLowerInvariant(),
    };

    /// <summary>The <c>error.type</c> of <paramref name="e"/>: its full type name (low cardinality, as the conventions ask).</summary>
    public static string ErrorType(Exception e) => e.GetType().FullName ?? e.GetType().Name;

    private TagList GenAiTags(KeyValuePair<string, object?>? error)
    {
        string model = _engine.ModelId;
        var tags = new TagList
        {
            { KvLinkInstruments.GenAiOperationName, KvLinkInstruments.ChatOperation },
            { KvLinkInstruments.GenAiProviderName, KvLinkInstruments.Provider },
            { KvLinkInstruments.GenAiRequestModel, model },
            _engineTag,
        };
        if (error is { } e) tags.Add(e);
        else tags.Add(KvLinkInstruments.GenAiResponseModel, model);
        return tags;
    }

    /// <summary>Marks the span failed (or cancelled); always false so it can sit in an exception filter.</summary>
    public static bool Fail(Activity? activity, Exception e)
    {
        if (activity is null) return false;
        if (e is OperationCanceledException) activity.SetTag("kvlink.cancelled", true);
        activity.SetStatus(ActivityStatusCode.Error, e.Message);
        activity.SetTag(KvLinkTelemetry.ErrorTypeTag, ErrorType(e));
        return false;
    }

    public void Dispose() => _tracking.Dispose();
}
