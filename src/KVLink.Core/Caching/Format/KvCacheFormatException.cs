namespace KVLink.Core.Caching;

/// <summary>
/// A serialized document cache that cannot be used: corrupt, truncated, of an unknown format version, or
/// failing its checksum. Stores turn it into a counted, logged miss; it never reaches the engine's callers.
/// </summary>
internal sealed class KvCacheFormatException : Exception
{
    /// <summary>Creates the exception.</summary>
    public KvCacheFormatException(string message, Exception? inner = null) : base(message, inner) { }
}
