using System.Runtime.CompilerServices;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Hosting;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="KvLinkEngine"/>, created by <see cref="KvLinkChatClientExtensions.AsChatClient"/>.
/// The question is the text of the last user message; the documents are the precomputed ids set with
/// <see cref="KvLinkChatOptionsExtensions.WithDocuments"/>. The prompt's system text is fixed by the engine's prompt format
/// (the layout link tokens were trained on), so system messages and earlier turns are not sent to the model.
/// </summary>
internal sealed class KvLinkChatClient : IChatClient
{
    private readonly KvLinkEngine _engine;
    private readonly ChatClientMetadata _metadata;
    private readonly TimeProvider _time;

    /// <summary>Creates a client over <paramref name="engine"/> (not owned: disposing the client leaves the engine running).</summary>
    public KvLinkChatClient(KvLinkEngine engine, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        _engine = engine;
        _time = timeProvider ?? TimeProvider.System;
        _metadata = new ChatClientMetadata(Diagnostics.KvLinkInstruments.Provider, null, engine.ModelId);
    }

    /// <inheritdoc/>
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (query, documents, generation) = Translate(messages, options);
        var result = await _engine.GenerateAsync(query, documents, generation, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ResponseId = NewId(),
            ModelId = _metadata.DefaultModelId,
            CreatedAt = _time.GetUtcNow(),
            FinishReason = Finish(result.FinishReason),
            Usage = Usage(result.Usage),
            RawRepresentation = result,
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (query, documents, generation) = Translate(messages, options);
        string responseId = NewId(), messageId = NewId();
        var created = _time.GetUtcNow();
        await foreach (var update in _engine.GenerateStreamingAsync(query, documents, generation, cancellationToken).ConfigureAwait(false))
        {
            if (update.Result is { } result)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result.Usage))])
                {
                    ResponseId = responseId, MessageId = messageId, ModelId = _metadata.DefaultModelId, CreatedAt = created,
                    FinishReason = Finish(result.FinishReason), RawRepresentation = result,
                };
            }
            else if (update.Delta.Length > 0)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, update.Delta)
                {
                    ResponseId = responseId, MessageId = messageId, ModelId = _metadata.DefaultModelId, CreatedAt = created,
                };
            }
        }
    }

    /// <inheritdoc/>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(KvLinkEngine)) return _engine;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Does nothing: the engine belongs to whoever created it (the DI container, or the caller).</summary>
    public void Dispose()
    {
    }

    internal (string Query, IReadOnlyList<string> Documents, GenerationOptions Options) Translate(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var last = messages.LastOrDefault(m => m.Role == ChatRole.User)
            ?? throw new ArgumentException("The conversation has no user message: the last user message is the question.", nameof(messages));
        string query = last.Text;
        if (string.IsNullOrWhiteSpace(query)) throw new ArgumentException("The last user message has no text.", nameof(messages));

        // ChatOptions.RawRepresentationFactory may supply this call's GenerationOptions (a KvLinkGenerationOptions to set the
        // mode and link tokens too): they replace the engine's Generation defaults; set ChatOptions properties still win.
        var defaults = options?.RawRepresentationFactory?.Invoke(this) switch
        {
            null => _engine.Options.Generation,
            GenerationOptions raw => raw,
            var other => throw new ArgumentException(
                $"ChatOptions.RawRepresentationFactory returned a {other.GetType().Name}; the KVLink chat client takes a {nameof(KvLinkGenerationOptions)} (or a {nameof(GenerationOptions)}).", nameof(options)),
        };
        var kvlink = defaults as KvLinkGenerationOptions;
        var generation = new KvLinkGenerationOptions
        {
            MaxNewTokens = options?.MaxOutputTokens ?? defaults.MaxNewTokens,
            Temperature = options?.Temperature ?? defaults.Temperature,
            TopP = options?.TopP ?? defaults.TopP,
            TopK = options?.TopK ?? defaults.TopK,
            Seed = options?.Seed is long seed ? unchecked((int)seed) : defaults.Seed,
            StopTokenIds = defaults.StopTokenIds,
            Mode = options.GetContextMode() ?? kvlink?.Mode,
            LinkTokens = options.GetLinkTokens() ?? kvlink?.LinkTokens,
        };
        return (query, options.GetDocuments(), generation);
    }

    private static ChatFinishReason Finish(FinishReason reason) => reason switch
    {
        FinishReason.Length => ChatFinishReason.Length,
        _ => ChatFinishReason.Stop,
    };

    private static UsageDetails Usage(GenerationUsage u) => new()
    {
        InputTokenCount = u.PromptTokens,
        CachedInputTokenCount = u.CachedTokens,
        OutputTokenCount = u.GeneratedTokens,
        TotalTokenCount = u.PromptTokens + u.GeneratedTokens,
    };

    private static string NewId() => Guid.NewGuid().ToString("N");
}
