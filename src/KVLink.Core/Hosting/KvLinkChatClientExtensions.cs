using KVLink.Core.Engine;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Hosting;

/// <summary>The <see cref="IChatClient"/> entry point over a <see cref="KvLinkEngine"/>.</summary>
public static class KvLinkChatClientExtensions
{
    /// <summary>
    /// An <see cref="IChatClient"/> over <paramref name="engine"/> (not owned: disposing the client leaves the engine running).
    /// The whole conversation reaches the model (<see cref="KvLinkEngine.ChatAsync"/>): system messages and
    /// <see cref="ChatOptions.Instructions"/> are added to the format's trained system text, earlier turns are laid out after the documents, and the last user message is the
    /// question. The documents are the precomputed ids set with <see cref="KvLinkChatOptionsExtensions.WithDocuments"/>.
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
}
