using Microsoft.Extensions.Logging;

namespace KVLink.Core.Diagnostics;

/// <summary>Source-generated log messages of the engine and the hosting layer.</summary>
internal static partial class KvLinkLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "KVLink engine '{Engine}' ready: {Layers} layers, dtype {DType}, device {Device}, link tokens {LinkTokens}, mode {Mode}")]
    public static partial void EngineReady(ILogger logger, string engine, int layers, string dtype, string device, int linkTokens, string mode);

    [LoggerMessage(EventId = 11, Level = LogLevel.Information, Message = "KVLink engine '{Engine}' system: CPU {CpuModel}, tier {CpuTier}; LibTorch ATen {AtenCapability}, oneDNN {OneDnnIsa}, {Threads} threads; compute dtype {ComputeDType} ({DTypeReason}); prompt rows {PromptKernel}; attention {AttentionKernel}; decode {DecodeKernel}")]
    public static partial void SystemInfo(ILogger logger, string engine, string cpuModel, string cpuTier, string atenCapability, string oneDnnIsa, int threads,
        string computeDType, string dtypeReason, string promptKernel, string attentionKernel, string decodeKernel);

    [LoggerMessage(EventId = 2, Level = LogLevel.Debug, Message = "Precomputed document {DocumentId} on engine '{Engine}' in {ElapsedMs:F1} ms ({Computed} slots encoded)")]
    public static partial void Precomputed(ILogger logger, string documentId, string engine, double elapsedMs, int computed);

    [LoggerMessage(EventId = 3, Level = LogLevel.Debug, Message = "Generated {Generated} tokens on engine '{Engine}' from {Documents} documents ({Mode}): TTFT {TtftMs:F1} ms, total {TotalMs:F1} ms, {Reused} tokens reused, {Computed} computed")]
    public static partial void Generated(ILogger logger, int generated, string engine, int documents, string mode, double ttftMs, double totalMs, int reused, int computed);

    [LoggerMessage(EventId = 4, Level = LogLevel.Warning, Message = "Generation on engine '{Engine}' failed")]
    public static partial void GenerationFailed(ILogger logger, Exception exception, string engine);

    [LoggerMessage(EventId = 5, Level = LogLevel.Debug, Message = "Document cache {Result} for {DocumentId} slot {Slot} on engine '{Engine}'")]
    public static partial void CacheLookup(ILogger logger, string result, string documentId, int slot, string engine);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information, Message = "Indexing on engine '{Engine}' finished: {Documents} documents, {Tokens} tokens ({Computed} computed) in {ElapsedMs:F0} ms")]
    public static partial void IndexingDone(ILogger logger, string engine, int documents, long tokens, long computed, double elapsedMs);

    [LoggerMessage(EventId = 7, Level = LogLevel.Warning, Message = "Indexing on engine '{Engine}' cancelled after {Documents} documents; every stored entry is complete")]
    public static partial void IndexingCancelled(ILogger logger, string engine, int documents);

    [LoggerMessage(EventId = 8, Level = LogLevel.Information, Message = "Loading KVLink model '{Engine}' from {ModelPath}")]
    public static partial void Loading(ILogger logger, string engine, string modelPath);

    [LoggerMessage(EventId = 9, Level = LogLevel.Warning, Message = "Stored cache of {DocumentId} slot {Slot} rejected on engine '{Engine}': {Problem}; the document is encoded again")]
    public static partial void EntryRejected(ILogger logger, string documentId, int slot, string engine, string problem);

    [LoggerMessage(EventId = 10, Level = LogLevel.Warning, Message = "Conversation cache {SessionKey} was not written to the store on engine '{Engine}'; other replicas recompute its turns")]
    public static partial void SessionPersistFailed(ILogger logger, Exception error, string sessionKey, string engine);
}
