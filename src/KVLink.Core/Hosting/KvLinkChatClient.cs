using System.Runtime.CompilerServices;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Hosting;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="KvLinkEngine"/>, created by <see cref="KvLinkChatExtensions.AsIChatClient"/>.
/// The whole conversation reaches the model (<see cref="KvLinkEngine.ChatAsync"/>): system messages and
/// <see cref="ChatOptions.Instructions"/> are added to the format's trained system text, earlier turns are laid out as
/// in docs/prompt-format.md, and the last user message is the question. The documents are the precomputed ids set with
/// <see cref="KvLinkChatExtensions.WithDocuments"/>. How every <see cref="ChatOptions"/> property is treated is
/// listed in docs/conversations.md; a property that would change the answer and cannot be honoured is refused, not dropped.
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
        var (conversation, documents, generation) = Translate(messages, options);
        var result = await _engine.AnswerAsync(conversation, documents, generation, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Text))
        {
            ResponseId = NewId(),
            ConversationId = options?.ConversationId,
            ModelId = _metadata.DefaultModelId,
            CreatedAt = _time.GetUtcNow(),
            FinishReason = Finish(result.FinishReason),
            Usage = Usage(result.Usage),
            RawRepresentation = result,
            AdditionalProperties = Extra(result),
        };
    }

    /// <inheritdoc/>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (conversation, documents, generation) = Translate(messages, options);
        string responseId = NewId(), messageId = NewId();
        var created = _time.GetUtcNow();
        string? conversationId = options?.ConversationId;
        await foreach (var update in _engine.AnswerStreamingAsync(conversation, documents, generation, cancellationToken).ConfigureAwait(false))
        {
            if (update.Result is { } result)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result.Usage))])
                {
                    ResponseId = responseId, MessageId = messageId, ConversationId = conversationId, ModelId = _metadata.DefaultModelId, CreatedAt = created,
                    FinishReason = Finish(result.FinishReason), RawRepresentation = result, AdditionalProperties = Extra(result),
                };
            }
            else if (update.Delta.Length > 0)
            {
                yield return new ChatResponseUpdate(ChatRole.Assistant, update.Delta)
                {
                    ResponseId = responseId, MessageId = messageId, ConversationId = conversationId, ModelId = _metadata.DefaultModelId, CreatedAt = created,
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

    internal (ConversationPrompt Conversation, IReadOnlyList<string> Documents, GenerationOptions Options) Translate(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        CheckSupported(options);
        // Read once, here: a malformed conversation fails before any work is queued, and the engine takes it as read.
        // Instructions join the system content after the system messages.
        var conversation = ChatTranscript.Read(messages, options?.Instructions);

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
            StopSequences = options?.StopSequences is { Count: > 0 } stops ? [.. stops] : defaults.StopSequences,
            KeepSpecialTokens = defaults.KeepSpecialTokens,
            Logprobs = defaults.Logprobs,
            TopLogprobs = defaults.TopLogprobs,
            Mode = options.GetContextMode() ?? kvlink?.Mode,
            LinkTokens = options.GetLinkTokens() ?? kvlink?.LinkTokens,
            ConversationId = options?.ConversationId ?? kvlink?.ConversationId,
            CacheSalt = options.GetCacheSalt() ?? kvlink?.CacheSalt,
        };
        return (conversation, options.GetDocuments(), generation);
    }

    /// <summary>Refuses the <see cref="ChatOptions"/> settings that would change the answer but that a KVLink prompt cannot honour.</summary>
    private void CheckSupported(ChatOptions? options)
    {
        if (options is null) return;
        if (options.ModelId is { Length: > 0 } model && !string.Equals(model, _engine.ModelId, StringComparison.Ordinal))
            throw new ArgumentException($"ChatOptions.ModelId is '{model}', but this client serves model '{_engine.ModelId}'.", nameof(options));
        if (options.Tools is { Count: > 0 }) throw new NotSupportedException("ChatOptions.Tools: the KVLink chat client does not call tools.");
        if (options.ResponseFormat is not null and not ChatResponseFormatText)
            throw new NotSupportedException("ChatOptions.ResponseFormat: only text is supported (no JSON mode or schema).");
        if (options.FrequencyPenalty is { } f && f != 0) throw new NotSupportedException("ChatOptions.FrequencyPenalty is not supported (leave it unset or 0).");
        if (options.PresencePenalty is { } p && p != 0) throw new NotSupportedException("ChatOptions.PresencePenalty is not supported (leave it unset or 0).");
        if (options.ContinuationToken is not null) throw new NotSupportedException("ChatOptions.ContinuationToken: the KVLink chat client has no background responses.");
    }

    private static AdditionalPropertiesDictionary? Extra(GenerationResult result) =>
        result.ConversationId is { } id ? new() { [KvLinkChatExtensions.ConversationKey] = id } : null;

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
