using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>Settings of a <see cref="FileKvCacheStore"/>.</summary>
public sealed class FileKvCacheStoreOptions
{
    /// <summary>Most bytes of cache files kept in the directory (by every process sharing it); unbounded by default.</summary>
    public long ByteBudget { get; set; } = long.MaxValue;
    /// <summary>How entries are written. Default <see cref="KvCacheQuantization.None"/>.</summary>
    public KvCacheQuantization Quantization { get; set; } = KvCacheQuantization.None;
    /// <summary>Temporary files of writers that died are deleted once older than this. Default one hour.</summary>
    public TimeSpan StaleTempFileAge { get; set; } = TimeSpan.FromHours(1);
    /// <summary>Where refusals and evictions are logged; null logs nothing.</summary>
    public ILogger? Logger { get; set; }
}
