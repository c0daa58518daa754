namespace KVLink.Core.Prompting;

/// <summary>A retrievable document: its text, an optional title, and optionally the caller's own id.</summary>
/// <param name="Text">The document body.</param>
/// <param name="Title">Title shown in the document header; empty when null.</param>
/// <param name="Id">The caller's id; null lets the engine derive a content-addressed id.</param>
/// <param name="KeepFraction">Fraction of the body's tokens to keep when caching (LLMLingua-style compression, in (0, 1]);
/// null uses the engine's <c>KvLinkOptions.Compression.KeepFraction</c>. The same document cached at two fractions
/// has two ids and two caches.</param>
public sealed record KvLinkDocument(string Text, string? Title = null, string? Id = null, double? KeepFraction = null);
