using KVLink.Core.Model;

namespace KVLink.Core.Compression;

/// <summary>
/// LLMLingua-style compression of documents before caching (<c>KvLinkOptions.Compression</c>): each document keeps
/// <see cref="KeepFraction"/> of its body tokens, chosen by information under a causal model, plus its header and
/// structural tokens. Off by default (fraction 1).
/// </summary>
public sealed class DocumentCompressionOptions
{
    /// <summary>Fraction of each document's body tokens kept, in (0, 1]; 1 (default) disables compression. A document's own <c>KeepFraction</c> wins.</summary>
    public double KeepFraction { get; set; } = 1.0;

    /// <summary>
    /// The model that scores tokens by self-information; null (default) uses the engine's own model. A smaller model
    /// with the same tokenizer makes compression cheaper. The engine's own model scores through the scheduler, batched with
    /// other work; another model runs its own forward on the engine's model thread. Not bindable from configuration.
    /// </summary>
    internal LlamaForCausalLM? ScorerModel { get; set; }

    /// <summary>Replaces self-information scoring altogether (for example <see cref="RandomTokenScorer"/>, the random-drop baseline). Not bindable from configuration.</summary>
    public ITokenScorer? Scorer { get; set; }

    /// <summary>Tokens scored per forward pass of the scoring model. Default 512.</summary>
    public int Window { get; set; } = 512;

    /// <summary>Preceding tokens of the same document each scoring window sees. Default 256.</summary>
    public int Context { get; set; } = 256;

    /// <summary>Throws naming the first invalid setting.</summary>
    public void Validate()
    {
        DocumentCompressor.Validate(KeepFraction);
        if (Window < 1) throw new ArgumentOutOfRangeException(nameof(Window), Window, "Compression.Window must be >= 1.");
        if (Context < 0) throw new ArgumentOutOfRangeException(nameof(Context), Context, "Compression.Context must be >= 0.");
    }
}
