using System.Collections.Concurrent;
using System.Globalization;
using KVLink.Core.Compression;
using KVLink.Core.Prompting;

namespace KVLink.Core.Engine;

public sealed partial class KvLinkEngine
{
    // Kept body tokens per compressed document id, so the slots of one document share one selection.
    private readonly ConcurrentDictionary<string, int[]> _keptBodies = new(StringComparer.Ordinal);
    private DocumentCompressor? _compressor; // created on the model thread on first use
    private string? _scorerName;

    /// <summary>The kept fraction a document is cached at: its own, else the engine's (validated).</summary>
    private double KeepFractionOf(KvLinkDocument document)
    {
        double fraction = document.KeepFraction ?? _options.Compression.KeepFraction;
        DocumentCompressor.Validate(fraction);
        return fraction;
    }

    /// <summary>What distinguishes the caches of a compressed document: kept fraction and scorer.</summary>
    private string CompressionIdentity(double fraction) =>
        $"keep={fraction.ToString("R", CultureInfo.InvariantCulture)};scorer={ScorerName}";

    private string ScorerName => _scorerName ??= _options.Compression.Scorer?.Name
        ?? (_options.Compression.ScorerModel is { } m ? $"selfinfo-{m.Config.NumHiddenLayers}x{m.Config.HiddenSize}-w{_options.Compression.Window}-c{_options.Compression.Context}"
            : $"selfinfo-self-w{_options.Compression.Window}-c{_options.Compression.Context}");

    /// <summary>The tokens of a document in a slot: the format's, or, when compressed, the header plus the kept body. Runs on the model thread.</summary>
    private IReadOnlyList<int> DocumentTokens(string id, KvLinkDocument document, int slot)
    {
        var full = PromptFormat.Document(Tokenizer, document, slot);
        double fraction = KeepFractionOf(document);
        if (fraction >= 1) return full;
        int header = PromptFormat.DocumentHeaderLength(Tokenizer, document, slot);
        var tokens0 = slot == 0 ? full : PromptFormat.Document(Tokenizer, document, 0);
        int header0 = slot == 0 ? header : PromptFormat.DocumentHeaderLength(Tokenizer, document, 0);
        // One selection per document, made in slot 0 (the body's tokens are the same in every slot).
        var kept = _keptBodies.GetOrAdd(id, _ =>
            [.. Compressor().Select(tokens0, fraction, header0, StructuralTokens(tokens0)).Where(i => i >= header0).Select(i => tokens0[i])]);
        if (!full.Skip(header).SequenceEqual(tokens0.Skip(header0)))
        {
            // A format whose body tokens depend on the slot: select in this slot directly.
            return [.. Compressor().Compress(full, fraction, header, StructuralTokens(full))];
        }
        return [.. full.Take(header), .. kept];
    }

    /// <summary>Tokens kept whatever their score: the last (the document's terminator) and any that contains a line break.</summary>
    private IEnumerable<int> StructuralTokens(IReadOnlyList<int> tokens)
    {
        for (int i = 0; i < tokens.Count; i++)
            if (i == tokens.Count - 1 || Tokenizer.Decode([tokens[i]]).Contains('\n', StringComparison.Ordinal)) yield return i;
    }

    private DocumentCompressor Compressor()
    {
        if (_compressor is not null) return _compressor;
        var o = _options.Compression;
        if (o.ScorerModel is { } m && m.Config.VocabSize != Model.Config.VocabSize)
            throw new InvalidOperationException($"The compression scorer model has a vocabulary of {m.Config.VocabSize} tokens, the engine's model {Model.Config.VocabSize}: they must share the tokenizer.");
        return _compressor = new DocumentCompressor(o.Scorer ?? new SelfInformation(o.ScorerModel ?? Model, o.Window, o.Context));
    }
}
