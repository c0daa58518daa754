namespace KVLink.Training;

/// <summary>
/// Draws training examples from QA and plain-text samples: with probability <see cref="TextFraction"/> a random
/// text sample, otherwise a random QA sample, blocked (segment mask, link tokens) with probability
/// <see cref="BlockedFraction"/> and with full attention otherwise. All draws come from the given
/// <see cref="TrainingRandom"/>, so a saved generator state reproduces the sequence.
/// </summary>
public sealed class TrainingMixture
{
    private readonly IReadOnlyList<QaSample> _qa;
    private readonly IReadOnlyList<TextSample> _text;

    /// <summary>Creates the mixture.</summary>
    /// <param name="builder">Turns samples into examples.</param>
    /// <param name="qa">QA samples (may be empty when <paramref name="textFraction"/> is 1).</param>
    /// <param name="text">Plain-text samples (may be empty when <paramref name="textFraction"/> is 0).</param>
    /// <param name="blockedFraction">Share of QA examples that are blocked.</param>
    /// <param name="textFraction">Share of examples that are plain text.</param>
    /// <param name="linkTokenChoices">When given, each blocked example draws its link-token count K uniformly from these values
    /// (one model then serves all of them); otherwise every example uses the builder's K.</param>
    public TrainingMixture(TrainingExampleBuilder builder, IReadOnlyList<QaSample> qa, IReadOnlyList<TextSample> text, double blockedFraction,
        double textFraction = 0, IReadOnlyList<int>? linkTokenChoices = null)
    {
        if (linkTokenChoices is not null && (linkTokenChoices.Count == 0 || linkTokenChoices.Any(k => k < 0)))
            throw new ArgumentException("Link-token choices must be a non-empty list of counts >= 0.", nameof(linkTokenChoices));
        LinkTokenChoices = linkTokenChoices;
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(qa);
        ArgumentNullException.ThrowIfNull(text);
        if (blockedFraction is < 0 or > 1 || double.IsNaN(blockedFraction)) throw new ArgumentOutOfRangeException(nameof(blockedFraction), blockedFraction, "Must be in [0, 1].");
        if (textFraction is < 0 or > 1 || double.IsNaN(textFraction)) throw new ArgumentOutOfRangeException(nameof(textFraction), textFraction, "Must be in [0, 1].");
        if (textFraction > 0 && text.Count == 0) throw new ArgumentException("A text fraction above 0 needs text samples.", nameof(text));
        if (textFraction < 1 && qa.Count == 0) throw new ArgumentException("A text fraction below 1 needs QA samples.", nameof(qa));
        Builder = builder;
        _qa = qa;
        _text = text;
        BlockedFraction = blockedFraction;
        TextFraction = textFraction;
    }

    /// <summary>The example builder.</summary>
    public TrainingExampleBuilder Builder { get; }

    /// <summary>Share of QA examples that are blocked.</summary>
    public double BlockedFraction { get; }

    /// <summary>Share of examples that are plain text.</summary>
    public double TextFraction { get; }

    /// <summary>The link-token counts blocked examples draw from, or null for the builder's.</summary>
    public IReadOnlyList<int>? LinkTokenChoices { get; }

    /// <summary>Draws the next example.</summary>
    public TrainingExample Next(TrainingRandom random)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (random.NextDouble() < TextFraction) return Builder.FromText(_text[random.Next(_text.Count)]);
        var attention = random.NextDouble() < BlockedFraction ? TrainingAttention.Blocked : TrainingAttention.Causal;
        var sample = _qa[random.Next(_qa.Count)];
        int? k = attention == TrainingAttention.Blocked && LinkTokenChoices is { } choices ? choices[random.Next(choices.Count)] : null;
        return Builder.FromQa(sample, attention, k);
    }
}
