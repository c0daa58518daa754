using KVLink.Core.Collections;
using KVLink.Core.Compression;
using KVLink.Core.Prompting;

namespace KVLink.Core.Engine;

/// <summary>
/// The tokens of a compressed document in a slot: its header plus the body tokens <see cref="DocumentCompressor"/> keeps.
/// With the engine's own model as the scorer (the default) the self-information is computed through the scheduler, one
/// <see cref="ScoreSequence"/> per scoring window, batched with whatever else runs; any other scorer runs on the model thread.
/// </summary>
internal sealed class DocumentCompression(EngineContext c)
{
    // Kept body tokens per compressed document id, so the slots of one document share one selection; bounded like the catalog.
    private readonly BoundedLru<string, int[]> _keptBodies = new(c.Options.DocumentCatalogCapacity);
    private readonly Lazy<ITokenScorer> _direct = new(() => DirectScorer(c));

    /// <summary>Forgets the selection made for <paramref name="id"/> (its content is replaced or removed).</summary>
    public void Forget(string id) => _keptBodies.Remove(id);

    /// <summary>
    /// The tokens of <paramref name="document"/> in <paramref name="slot"/>, from its <paramref name="full"/> tokens there (and
    /// its <paramref name="headerLength"/> when known), keeping <paramref name="fraction"/> of the body. Scoring runs at
    /// <paramref name="background"/> priority and stops when <paramref name="ct"/> fires.
    /// </summary>
    public async Task<IReadOnlyList<int>> TokensAsync(string id, KvLinkDocument document, double fraction, int slot, IReadOnlyList<int> full,
        int? headerLength, bool background, CancellationToken ct)
    {
        int header = headerLength ?? c.Format.DocumentHeaderLength(c.Tokenizer, document, slot, full);
        var tokens0 = slot == 0 ? full : c.Format.Document(c.Tokenizer, document, 0);
        int header0 = slot == 0 ? header : c.Format.DocumentHeaderLength(c.Tokenizer, document, 0, tokens0);
        if (!full.Skip(header).SequenceEqual(tokens0.Skip(header0)))
        {
            // A format whose body tokens depend on the slot: select in this slot directly.
            var keep = await SelectAsync(full, fraction, header, background, ct).ConfigureAwait(false);
            return [.. keep.Select(i => full[i])];
        }
        // One selection per document, made in slot 0 (the body's tokens are the same in every slot). Two callers that
        // miss at once both score: the selection is deterministic, so either one's is the same.
        if (!_keptBodies.TryGetValue(id, out var kept))
        {
            var keep = await SelectAsync(tokens0, fraction, header0, background, ct).ConfigureAwait(false);
            kept = [.. keep.Where(i => i >= header0).Select(i => tokens0[i])];
            _keptBodies.Set(id, kept);
        }
        return [.. full.Take(header), .. kept];
    }

    private async Task<int[]> SelectAsync(IReadOnlyList<int> tokens, double fraction, int header, bool background, CancellationToken ct)
    {
        double[] scores = await ScoreAsync(tokens, background, ct).ConfigureAwait(false);
        return DocumentCompressor.Select(tokens, fraction, header, StructuralTokens(tokens), () => scores);
    }

    /// <summary>Per-token scores of <paramref name="tokens"/>: <see cref="SelfInformation"/> through the scheduler when the engine's model scores.</summary>
    public async Task<double[]> ScoreAsync(IReadOnlyList<int> tokens, bool background, CancellationToken ct)
    {
        var o = c.Options.Compression;
        if (o.Scorer is not null || (o.ScorerModel is { } m && !ReferenceEquals(m, c.Model)))
        {
            // A scheduler step runs the engine's model only (its weights, its dtype, caches sized for it), so a scorer of
            // another model, or one that is no model at all, keeps its own direct call; it runs on the model thread,
            // between steps, like all model work.
            var scorer = _direct.Value;
            return await c.Worker.Run(() => scorer.Score(tokens), ct).ConfigureAwait(false);
        }
        var scores = new double[tokens.Count];
        if (tokens.Count == 0) return scores;
        scores[0] = double.PositiveInfinity; // no context: always kept, as SelfInformation scores it
        var windows = SelfInformation.Windows(tokens.Count, o.Window, o.Context)
            .Select(w => (w.Start, Sequence: new ScoreSequence(c.Model, tokens, w, background, ct))).ToList();
        foreach (var (_, sequence) in windows) c.Worker.Scheduler.Submit(sequence);
        foreach (var (start, sequence) in windows) (await sequence.Task.ConfigureAwait(false)).CopyTo(scores, start);
        return scores;
    }

    /// <summary>Tokens kept whatever their score: the last (the document's terminator) and any that contains a line break.</summary>
    private List<int> StructuralTokens(IReadOnlyList<int> tokens)
    {
        var keep = new List<int>();
        for (int i = 0; i < tokens.Count; i++)
            if (i == tokens.Count - 1 || c.Tokenizer.Decode([tokens[i]]).Contains('\n', StringComparison.Ordinal)) keep.Add(i);
        return keep;
    }

    private static ITokenScorer DirectScorer(EngineContext c)
    {
        var o = c.Options.Compression;
        if (o.ScorerModel is { } m && m.Config.VocabSize != c.Model.Config.VocabSize)
            throw new InvalidOperationException($"The compression scorer model has a vocabulary of {m.Config.VocabSize} tokens, the engine's model {c.Model.Config.VocabSize}: they must share the tokenizer.");
        return o.Scorer ?? new SelfInformation(o.ScorerModel!, o.Window, o.Context);
    }
}
