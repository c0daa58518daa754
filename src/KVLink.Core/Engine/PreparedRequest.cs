using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;

namespace KVLink.Core.Engine;

/// <summary>Everything a request needs before it reaches the model thread.</summary>
internal sealed record PreparedRequest(
    PromptLayout Layout, ContextMode Mode, GenerationOptions Options, IReadOnlyList<DocumentKvCache> Entries,
    int CachedTokens, int OnDemandTokens, TimeSpan StoreTime, TimeSpan OnDemandTime, Stopwatch Clock)
{
    /// <summary>The key of the conversation's kept cache (chat requests), or null (one-shot questions keep none).</summary>
    public string? SessionKey { get; init; }

    /// <summary>The conversation's id (the caller's, or the derived one), or null.</summary>
    public string? ConversationId { get; init; }

    /// <summary>The conversation's kept cache read from the store (<see cref="KvLinkOptions.PersistSessions"/>) when this
    /// replica held none, or null. Owned by the request: placement adopts it (<see cref="ConversationSessions.Adopt"/>) and disposes it.</summary>
    public DocumentKvCache? PersistedSession { get; init; }
}
