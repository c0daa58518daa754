using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using KVLink.Core.Compression;
using KVLink.Core.Prompting;
using KVLink.Core.Collections;

namespace KVLink.Core.Engine;

/// <summary>
/// Document ids, and the documents this engine has seen lately: a bounded, least-recently-used catalog
/// (<see cref="KvLinkOptions.DocumentCatalogCapacity"/>). A document that falls out of it is not lost: its text is in
/// every stored entry, and <see cref="DocumentKvSource"/> resolves it from the store.
/// </summary>
internal sealed class DocumentCatalog(KvLinkOptions options, string fingerprint, string formatName)
{
    private readonly BoundedLru<string, KvLinkDocument> _known = new(options.DocumentCatalogCapacity);
    private string? _scorerName;

    /// <summary>Documents held now (at most <see cref="KvLinkOptions.DocumentCatalogCapacity"/>).</summary>
    public int Count => _known.Count;

    /// <summary>See <see cref="KvLinkEngine.DocumentId"/>.</summary>
    public string Id(KvLinkDocument document)
    {
        double fraction = KeepFraction(document);
        // A compressed document is another cache: the kept fraction (and scorer) is part of its id, hence of every key.
        string suffix = fraction < 1 ? "~keep" + fraction.ToString("R", CultureInfo.InvariantCulture) : "";
        // '~' is doubled in a caller's id so that a single '~' can only start the suffix: the mapping is one-to-one.
        if (document.Id is not null) return document.Id.Replace("~", "~~", StringComparison.Ordinal) + suffix;
        string identity = string.Join('\0', fingerprint, formatName, document.Title ?? "", document.Text);
        if (fraction < 1) identity += '\0' + CompressionIdentity(fraction);
        return "doc-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(identity)))[..32] + suffix;
    }

    /// <summary>The kept fraction a document is cached at: its own, else the engine's (validated).</summary>
    public double KeepFraction(KvLinkDocument document)
    {
        double fraction = document.KeepFraction ?? options.Compression.KeepFraction;
        DocumentCompressor.Validate(fraction);
        return fraction;
    }

    /// <summary>The document with its kept fraction resolved, as caches are checked against it.</summary>
    public KvLinkDocument Resolved(KvLinkDocument document) => document with { KeepFraction = KeepFraction(document) };

    /// <summary>Remembers <paramref name="document"/> under <paramref name="id"/>; returns the content it replaces, if it differs.</summary>
    public KvLinkDocument? Remember(string id, KvLinkDocument document)
    {
        var replaced = _known.TryGetValue(id, out var previous) && (previous.Text != document.Text || previous.Title != document.Title) ? previous : null;
        _known.Set(id, document);
        return replaced;
    }

    public bool TryGet(string id, out KvLinkDocument document) => _known.TryGetValue(id, out document);

    public void Forget(string id) => _known.Remove(id);

    /// <summary>What distinguishes the caches of a compressed document: kept fraction and scorer.</summary>
    private string CompressionIdentity(double fraction) =>
        $"keep={fraction.ToString("R", CultureInfo.InvariantCulture)};scorer={ScorerName}";

    private string ScorerName => _scorerName ??= options.Compression.Scorer?.Name
        ?? (options.Compression.ScorerModel is { } m ? $"selfinfo-{m.Config.NumHiddenLayers}x{m.Config.HiddenSize}-w{options.Compression.Window}-c{options.Compression.Context}"
            : $"selfinfo-self-w{options.Compression.Window}-c{options.Compression.Context}");
}
