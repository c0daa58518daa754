using KVLink.Core.Generation;

namespace KVLink.Core.Engine;

/// <summary>Generation options plus the per-call KVLink choices; unset values fall back to <see cref="KvLinkOptions"/>.</summary>
public sealed record KvLinkGenerationOptions : GenerationOptions
{
    /// <summary>Context mode for this call, or null for the engine's default.</summary>
    public ContextMode? Mode { get; init; }

    /// <summary>Link tokens per document for this call, or null for the engine's default.</summary>
    public int? LinkTokens { get; init; }
}
