namespace KVLink.Core.Prompting;

/// <summary>A retrievable document: its text, an optional title, and optionally the caller's own id.</summary>
/// <param name="Text">The document body.</param>
/// <param name="Title">Title shown in the document header; empty when null.</param>
/// <param name="Id">The caller's id; null lets the engine derive a content-addressed id.</param>
public sealed record KvLinkDocument(string Text, string? Title = null, string? Id = null);
