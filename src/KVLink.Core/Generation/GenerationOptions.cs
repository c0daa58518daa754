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

    /// <summary>
    /// Text that ends generation when it appears in the output, even split across tokens (null or empty: none). The
    /// text stops right before it; text that might still begin one is held back while streaming, never emitted and
    /// then retracted. <see cref="GenerationResult.FinishReason"/> is then <see cref="FinishReason.Stop"/>.
    /// </summary>
    public IReadOnlyList<string>? StopSequences { get; init; }

    /// <summary>False (default): special tokens the model generates (link tokens, reserved tokens, headers) are left out
    /// of the text; true keeps them as their names. They stay in <see cref="GenerationResult.TokenIds"/> either way.</summary>
    public bool KeepSpecialTokens { get; init; }

    /// <summary>Collect the log probability of every generated token (<see cref="GenerationResult.Logprobs"/>).</summary>
    public bool Logprobs { get; init; }

    /// <summary>With <see cref="Logprobs"/>, how many most likely alternatives to report per token (0-20, default 0).</summary>
    public int TopLogprobs { get; init; }

    /// <summary>Most top-logprob alternatives per token (as in OpenAI's API).</summary>
    public const int MaxTopLogprobs = 20;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first invalid option.</summary>
    public void Validate()
    {
        if (MaxNewTokens <= 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be positive.");
        if (!(Temperature >= 0) || float.IsInfinity(Temperature)) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a finite number >= 0.");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be >= 0 (0 disables it).");
        if (TopLogprobs is < 0 or > MaxTopLogprobs) throw new ArgumentOutOfRangeException(nameof(TopLogprobs), TopLogprobs, $"TopLogprobs must be between 0 and {MaxTopLogprobs}.");
        if (TopLogprobs > 0 && !Logprobs) throw new ArgumentException("TopLogprobs needs Logprobs = true.", nameof(TopLogprobs));
        if (StopSequences is not null)
            for (int i = 0; i < StopSequences.Count; i++)
                if (string.IsNullOrEmpty(StopSequences[i])) throw new ArgumentException($"Stop sequence #{i} is empty.", nameof(StopSequences));
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
    }
}
