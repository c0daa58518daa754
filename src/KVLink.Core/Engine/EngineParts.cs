namespace KVLink.Core.Engine;

/// <summary>What a <see cref="KvLinkEngine"/> is made of, for the test support to inspect: the shared context (model
/// thread, scheduler, store), the document catalog and the request runner (prompt prefixes, conversations).</summary>
internal sealed record EngineParts(EngineContext Context, DocumentCatalog Catalog, RequestRunner Requests);
