using KVLink.Core.Engine;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Hosting;

/// <summary>The <see cref="IChatClient"/> entry point over a <see cref="KvLinkEngine"/>.</summary>
public static class KvLinkChatClientExtensions
{
    /// <summary>
    /// An <see cref="IChatClient"/> over <paramref name="engine"/> (not owned: disposing the client leaves the engine running).
    /// The question is the text of the last user message; the documents are the precomputed ids set with
    /// <see cref="KvLinkChatOptionsExtensions.WithDocuments"/>. System messages and earlier turns are not sent (the prompt
    /// format fixes the system text the link tokens were trained with).
    /// </summary>
    /// <remarks>
    /// Per call: <see cref="ChatOptions.MaxOutputTokens"/>, <see cref="ChatOptions.Temperature"/>, <see cref="ChatOptions.TopP"/>,
    /// <see cref="ChatOptions.TopK"/> and <see cref="ChatOptions.Seed"/> map to <see cref="Generation.GenerationOptions"/>; a
    /// <see cref="ChatOptions.RawRepresentationFactory"/> returning a <see cref="KvLinkGenerationOptions"/> replaces the engine's
    /// <see cref="KvLinkOptions.Generation"/> defaults for the call (its mode and link tokens included), the set
    /// <see cref="ChatOptions"/> properties still applying on top. StopSequences, tools and response formats are ignored.
    /// Usage: InputTokenCount = prompt tokens, CachedInputTokenCount = prompt tokens reused from stored caches,
    /// OutputTokenCount = generated tokens. <see cref="ChatClientMetadata.DefaultModelId"/> is <see cref="KvLinkEngine.ModelId"/>;
    /// <c>GetService&lt;KvLinkEngine&gt;()</c> returns the engine.
    /// </remarks>
    public static IChatClient AsChatClient(this KvLinkEngine engine) => new KvLinkChatClient(engine);
}
