namespace KVLink.Core.Engine;

/// <summary>How the documents of a request reach the model.</summary>
public enum ContextMode
{
    /// <summary>Stored document caches, re-rotated, plus link tokens computed per query (the fast path).</summary>
    KvLink,
    /// <summary>The same prompt encoded whole with full causal attention: the standard path, baseline and upper bound.</summary>
    FullPrefill,
}
