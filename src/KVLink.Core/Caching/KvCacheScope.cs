namespace KVLink.Core.Caching;

/// <summary>
/// A set of entries to invalidate: those matching every non-null part. <c>new KvCacheScope(Tenant: "a")</c>
/// is everything of tenant a; <c>new KvCacheScope(DocumentId: "d")</c> is document d in every tenant and model.
/// </summary>
/// <param name="Tenant">Only this tenant, or any when null.</param>
/// <param name="ModelFingerprint">Only this model, or any when null.</param>
/// <param name="DocumentId">Only this document id, or any when null.</param>
public sealed record KvCacheScope(string? Tenant = null, string? ModelFingerprint = null, string? DocumentId = null)
{
    /// <summary>True when <paramref name="key"/> lies in the scope.</summary>
    public bool Matches(KvCacheKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return (Tenant is null || Tenant == key.Tenant)
            && (ModelFingerprint is null || ModelFingerprint == key.ModelFingerprint)
            && (DocumentId is null || DocumentId == key.DocumentId);
    }

    /// <summary>Matches on the part hashes (for stores that keep only hashes, like file names).</summary>
    internal bool MatchesHashes(string tenantHash, string modelHash, string documentHash) =>
        (Tenant is null || KvCacheKey.HashOf("tenant", Tenant)[..16] == tenantHash)
        && (ModelFingerprint is null || KvCacheKey.HashOf("model", ModelFingerprint)[..16] == modelHash)
        && (DocumentId is null || KvCacheKey.HashOf("document", DocumentId)[..16] == documentHash);
}
