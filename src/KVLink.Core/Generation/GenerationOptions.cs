namespace KVLink.Core.Generation;

/// <summary>How tokens are chosen and when generation stops.</summary>
public record GenerationOptions
{
    /// <summary>Most tokens to generate (default 200, as in the KVLink evaluation). <see cref="int.MaxValue"/> means
    /// "until a stop token or the end of the model's context".</summary>
    public int MaxNewTokens { get; init; } = 200;

    /// <summary>0 (default) decodes greedily; above 0 samples from softmax(logits / temperature). Temperatures below
    /// <see cref="TokenSampler.GreedyBelow"/> (1e-5) also decode greedily.</summary>
    public float Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens when sampling; 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches p; 1 keeps all.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Seed of the sampler; the same seed, prompt and model give the same tokens.</summary>
    public int? Seed { get; init; }

    /// <summary>Token ids that end generation (not included in the text); null uses the model's end-of-turn ids.</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (MaxNewTokens <= 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be positive.");
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a finite number >= 0.");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be >= 0 (0 disables it).");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
    }
}
