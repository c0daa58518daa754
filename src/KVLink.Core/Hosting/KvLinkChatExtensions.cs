using System.Text.Json;
using KVLink.Core.Engine;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Hosting;

/// <summary>
/// The <see cref="IChatClient"/> entry point over a <see cref="KvLinkEngine"/> (<see cref="AsIChatClient"/>), and the typed
/// KVLink settings its calls carry in <see cref="ChatOptions.AdditionalProperties"/>.
/// </summary>
public static class KvLinkChatExtensions
{
    /// <summary>Key of the document id list (a <c>string[]</c>) in <see cref="ChatOptions.AdditionalProperties"/>.</summary>
    public const string DocumentsKey = "kvlink.documents";
    /// <summary>Key, in a response's <c>AdditionalProperties</c>, of the key under which the engine kept the conversation's
    /// attention cache (<see cref="Generation.GenerationResult.ConversationId"/>); pass it as <see cref="ChatOptions.ConversationId"/>
    /// to continue that session explicitly. The whole history must still be sent: the engine keeps attention caches, not messages.</summary>
    public const string ConversationKey = "kvlink.conversation_id";
    /// <summary>Key of the <see cref="ContextMode"/> override.</summary>
    public const string ModeKey = "kvlink.mode";
    /// <summary>Key of the caller's cache salt (a string; <see cref="KvLinkGenerationOptions.CacheSalt"/>).</summary>
    public const string CacheSaltKey = "kvlink.cache_salt";
    /// <summary>Key of the link-tokens-per-document override (an int).</summary>
    public const string LinkTokensKey = "kvlink.link_tokens";

    /// <summary>
    /// An <see cref="IChatClient"/> over <paramref name="engine"/> (not owned: disposing the client leaves the engine running).
    /// The whole conversation reaches the model (<see cref="KvLinkEngine.ChatAsync"/>): system messages and
    /// <see cref="ChatOptions.Instructions"/> are added to the format's trained system text, earlier turns are laid out after the documents, and the last user message is the
    /// question. The documents are the precomputed ids set with <see cref="WithDocuments"/>.
    /// </summary>
    /// <remarks>
    /// Per call: <see cref="ChatOptions.MaxOutputTokens"/>, <see cref="ChatOptions.Temperature"/>, <see cref="ChatOptions.TopP"/>,
    /// <see cref="ChatOptions.TopK"/>, <see cref="ChatOptions.Seed"/>, <see cref="ChatOptions.StopSequences"/> and
    /// <see cref="ChatOptions.ConversationId"/> map to <see cref="KvLinkGenerationOptions"/>; a
    /// <see cref="ChatOptions.RawRepresentationFactory"/> returning a <see cref="KvLinkGenerationOptions"/> replaces the engine's
    /// <see cref="KvLinkOptions.Generation"/> defaults for the call (its mode and link tokens included), the set
    /// <see cref="ChatOptions"/> properties still applying on top. Tools and non-text response formats are refused with
    /// <see cref="NotSupportedException"/> (docs/conversations.md lists every property). Usage: InputTokenCount = prompt tokens, CachedInputTokenCount = prompt tokens
    /// reused from stored caches, OutputTokenCount = generated tokens. <see cref="ChatClientMetadata.DefaultModelId"/> is
    /// <see cref="KvLinkEngine.ModelId"/>; <c>GetService&lt;KvLinkEngine&gt;()</c> returns the engine. The name follows
    /// Microsoft.Extensions.AI's convention (<c>AsIChatClient</c>).
    /// </remarks>
    public static IChatClient AsIChatClient(this KvLinkEngine engine)
    {
        ArgumentNullException.ThrowIfNull(engine);
        return new KvLinkChatClient(engine);
    }

    /// <summary>The former name of <see cref="AsIChatClient"/>, kept for one release.</summary>
    [Obsolete("Use AsIChatClient, the name Microsoft.Extensions.AI's convention gives this entry point. AsChatClient is removed in the next release.")]
    public static IChatClient AsChatClient(this KvLinkEngine engine) => AsIChatClient(engine);

    /// <summary>Sets the ids of the precomputed documents to answer from, in prompt order; returns <paramref name="options"/>.</summary>
    public static ChatOptions WithDocuments(this ChatOptions options, params IEnumerable<string> documentIds)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(documentIds);
        string[] ids = [.. documentIds];
        for (int i = 0; i < ids.Length; i++)
            if (string.IsNullOrWhiteSpace(ids[i])) throw new ArgumentException($"Document id #{i} is empty.", nameof(documentIds));
        (options.AdditionalProperties ??= [])[DocumentsKey] = ids;
        return options;
    }

    /// <summary>The document ids set by <see cref="WithDocuments"/> (also accepted: any string sequence or a JSON string array under <see cref="DocumentsKey"/>); empty when none.</summary>
    /// <exception cref="ArgumentException">The value under <see cref="DocumentsKey"/> is not a list of strings.</exception>
    public static IReadOnlyList<string> GetDocuments(this ChatOptions? options)
    {
        if (options?.AdditionalProperties is null || !options.AdditionalProperties.TryGetValue(DocumentsKey, out object? value) || value is null) return [];
        return value switch
        {
            string[] a => a,
            string s => [s],
            IEnumerable<string> e => [.. e],
            JsonElement { ValueKind: JsonValueKind.Array } j => [.. j.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : throw NotStrings())],
            _ => throw NotStrings(),
        };

        static ArgumentException NotStrings() => new($"ChatOptions.AdditionalProperties[\"{DocumentsKey}\"] must be a list of document id strings.", "options");
    }

    /// <summary>Overrides the engine's context mode for this request; returns <paramref name="options"/>.</summary>
    public static ChatOptions WithContextMode(this ChatOptions options, ContextMode mode)
    {
        ArgumentNullException.ThrowIfNull(options);
        (options.AdditionalProperties ??= [])[ModeKey] = mode;
        return options;
    }

    /// <summary>The context mode set by <see cref="WithContextMode"/>, or null.</summary>
    public static ContextMode? GetContextMode(this ChatOptions? options) =>
        options?.AdditionalProperties?.TryGetValue(ModeKey, out object? v) == true
            ? v switch { ContextMode m => m, string s => Enum.Parse<ContextMode>(s, ignoreCase: true), JsonElement { ValueKind: JsonValueKind.String } j => Enum.Parse<ContextMode>(j.GetString()!, ignoreCase: true), _ => null }
            : null;

    /// <summary>Overrides the link tokens per document for this request; returns <paramref name="options"/>.</summary>
    public static ChatOptions WithLinkTokens(this ChatOptions options, int linkTokens)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(linkTokens);
        (options.AdditionalProperties ??= [])[LinkTokensKey] = linkTokens;
        return options;
    }

    /// <summary>The link tokens set by <see cref="WithLinkTokens"/>, or null.</summary>
    public static int? GetLinkTokens(this ChatOptions? options) =>
        options?.AdditionalProperties?.TryGetValue(LinkTokensKey, out object? v) == true
            ? v switch { int i => i, long l => checked((int)l), JsonElement { ValueKind: JsonValueKind.Number } j => j.GetInt32(), _ => null }
            : null;

    /// <summary>
    /// Sets the caller's cache salt (<see cref="KvLinkGenerationOptions.CacheSalt"/>): kept conversations are reused only by
    /// requests with the same salt, so users of one tenant learn nothing about each other's conversations from the cached
    /// token counts. Give each end user a secret they cannot guess; returns <paramref name="options"/>.
    /// </summary>
    public static ChatOptions WithCacheSalt(this ChatOptions options, string salt)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrEmpty(salt);
        (options.AdditionalProperties ??= [])[CacheSaltKey] = salt;
        return options;
    }

    /// <summary>The cache salt set by <see cref="WithCacheSalt"/> (also accepted: a JSON string under <see cref="CacheSaltKey"/>), or null.</summary>
    /// <exception cref="ArgumentException">The value under <see cref="CacheSaltKey"/> is not a non-empty string.</exception>
    public static string? GetCacheSalt(this ChatOptions? options)
    {
        if (options?.AdditionalProperties is null || !options.AdditionalProperties.TryGetValue(CacheSaltKey, out object? value) || value is null) return null;
        return value switch
        {
            string { Length: > 0 } s => s,
            JsonElement { ValueKind: JsonValueKind.String } j when j.GetString() is { Length: > 0 } s => s,
            _ => throw new ArgumentException($"ChatOptions.AdditionalProperties[\"{CacheSaltKey}\"] must be a non-empty string.", nameof(options)),
        };
    }
}
