using System.Security.Cryptography;
using System.Text;

namespace KVLink.Core.Caching;

/// <summary>
/// Identity of one stored document cache: tenant, model fingerprint, prompt format, document id and slot.
/// Every store keys its entries by <see cref="Hash"/>, a SHA-256 of the canonical form, so keys are the
/// same in every process, on every machine and after restarts, and no caller-supplied string (a document
/// id with "../" in it, say) ever becomes part of a file name or a server key.
/// </summary>
public sealed record KvCacheKey
{
    /// <summary>The tenant used when none is given.</summary>
    public const string DefaultTenant = "default";

    /// <summary>Creates a key; every part must be non-empty and the slot non-negative.</summary>
    /// <exception cref="ArgumentException">An empty part or a negative slot.</exception>
    public KvCacheKey(string tenant, string modelFingerprint, string promptFormat, string documentId, int slot)
    {
        ArgumentException.ThrowIfNullOrEmpty(tenant);
        ArgumentException.ThrowIfNullOrEmpty(modelFingerprint);
        ArgumentException.ThrowIfNullOrEmpty(promptFormat);
        ArgumentException.ThrowIfNullOrEmpty(documentId);
        ArgumentOutOfRangeException.ThrowIfNegative(slot);
        (Tenant, ModelFingerprint, PromptFormat, DocumentId, Slot) = (tenant, modelFingerprint, promptFormat, documentId, slot);
        Hash = HashOf("entry", Tenant, ModelFingerprint, PromptFormat, DocumentId, Slot.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>The namespace the entry belongs to; entries of one tenant are never served to another.</summary>
    public string Tenant { get; }
    /// <summary>Fingerprint of the model that produced the entry.</summary>
    public string ModelFingerprint { get; }
    /// <summary>Name of the prompt format.</summary>
    public string PromptFormat { get; }
    /// <summary>The document's id (content-derived unless the caller chose one).</summary>
    public string DocumentId { get; }
    /// <summary>The slot the document was encoded for.</summary>
    public int Slot { get; }

    /// <summary>32 lower-case hex digits (128 bits of SHA-256) over all parts; what stores key entries by.</summary>
    public string Hash { get; }

    /// <summary>16 hex digits identifying the tenant alone (stores use it to invalidate a tenant).</summary>
    public string TenantHash => HashOf("tenant", Tenant)[..16];
    /// <summary>16 hex digits identifying the model alone.</summary>
    public string ModelHash => HashOf("model", ModelFingerprint)[..16];
    /// <summary>16 hex digits identifying the document id alone.</summary>
    public string DocumentHash => HashOf("document", DocumentId)[..16];

    /// <summary>The readable form, for logs.</summary>
    public override string ToString() => $"{Tenant}/{ModelFingerprint}/{PromptFormat}/{DocumentId}/slot-{Slot}";

    /// <summary>SHA-256 over length-prefixed UTF-8 parts (no separator can be forged), as 32 hex digits.</summary>
    internal static string HashOf(params string[] parts)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        foreach (string part in parts)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(part);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(length, bytes.Length);
            sha.AppendData(length);
            sha.AppendData(bytes);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..32];
    }
}
