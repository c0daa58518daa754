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
    /// exact either way: only tokens identical to the kept ones are taken from it. The id is scoped to the engine's
    /// <see cref="KvLinkOptions.Tenant"/> and to <see cref="CacheSalt"/>: the same id under another salt is another conversation.
    /// </summary>
    public string? ConversationId { get; init; }

    /// <summary>
    /// For a conversation (<c>KvLinkEngine.ChatAsync</c>): the secret of the caller (an end user, a session) whose kept
    /// attention caches it may reuse, or null. Kept conversations are found by a key of tenant, salt and conversation id
    /// (explicit or derived), so a caller with another salt neither reuses nor replaces them, and its usage counts tell it
    /// nothing about them. Without a salt, every caller of the tenant shares one trust domain: one who knows a conversation's
    /// start can probe its later turns through the cached token count. Give each user of a shared tenant a salt they cannot
    /// guess (e.g. a per-user random value kept server-side, not their public name). Only a hash of it is kept, never the salt.
    /// </summary>
    /// <remarks>Must not be empty when set.</remarks>
    public string? CacheSalt { get; init; }
}
