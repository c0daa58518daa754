using KVLink.Core.Generation;

namespace KVLink.Core.Engine;

/// <summary>Generation options plus the per-call KVLink choices; unset values fall back to <see cref="KvLinkOptions"/>.</summary>
public sealed record KvLinkGenerationOptions : GenerationOptions
{
    /// <summary>Context mode for this call, or null for the engine's default.</summary>
    public ContextMode? Mode { get; init; }

    /// <summary>Link tokens per document for this call, or null for the engine's default.</summary>
    public int? LinkTokens { get; init; }

    /// <summary>
    /// For a conversation (<c>KvLinkEngine.ChatAsync</c>): the key of its kept attention cache. Null derives one from the
    /// conversation's start (system content, documents, first question), which is stable across its turns. Reuse is
    /// exact either way: only tokens identical to the kept ones are taken from it.
    /// </summary>
    public string? ConversationId { get; init; }
}
