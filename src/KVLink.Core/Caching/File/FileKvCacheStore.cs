using System.Text.RegularExpressions;
using KVLink.Core.Model.SafeTensors;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using KVLink.Core.IO;

namespace KVLink.Core.Caching;

/// <summary>
/// A store in one directory, one <see cref="KvCacheFormat"/> file per entry, which several processes may share.
/// <list type="bullet">
/// <item>File names are <c>{tenant}-{model}-{document}-{key}.kvc</c>, each part a hash (see <see cref="KvCacheKey"/>):
/// a caller's id never becomes part of a path, and invalidation by tenant, model or document needs only the names.</item>
/// <item>Writes go to a temporary file (hidden name, <c>.tmp</c>), are flushed to disk and renamed over the
/// target, so a reader sees the old entry, the new one or none, never a partial one, even if the writer is killed.</item>
/// <item>Reads go straight from the file into tensor memory and verify the checksum; anything wrong is a miss.</item>
/// <item>A hit touches the file's modification time, so LRU eviction under <see cref="FileKvCacheStoreOptions.ByteBudget"/>
/// sees the uses of every process; the index (entries, bytes) is rebuilt from the directory on start and on each eviction pass.</item>
/// </list>
/// </summary>
public sealed partial class FileKvCacheStore : IKvCacheStore, IKvCacheStoreInvalidation
{
    private const string Extension = ".kvc";
    private readonly FileKvCacheStoreOptions _options;
    private readonly ILogger _logger;
    private readonly StoreCounters _counters = new();
    private readonly Lock _evictLock = new();
    private long _entries, _bytes;

    /// <summary>Opens (creating if needed) a store in <paramref name="directory"/> and indexes the entries already there.</summary>
    public FileKvCacheStore(string directory, FileKvCacheStoreOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        _options = options ?? new FileKvCacheStoreOptions();
        if (_options.ByteBudget < 0)
            throw new ArgumentOutOfRangeException("options.ByteBudget", _options.ByteBudget, "FileKvCacheStoreOptions.ByteBudget must be >= 0.");
        if (_options.StaleTempFileAge < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException("options.StaleTempFileAge", _options.StaleTempFileAge, "FileKvCacheStoreOptions.StaleTempFileAge must be >= 0.");
        if (!Enum.IsDefined(_options.Quantization))
            throw new ArgumentOutOfRangeException("options.Quantization", _options.Quantization, "FileKvCacheStoreOptions.Quantization is not a known quantization.");
        _logger = _options.Logger ?? NullLogger.Instance;
        Directory = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(Directory);
        Rescan(cleanTemp: true);
    }

    /// <summary>The directory holding the entries.</summary>
    public string Directory { get; }

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics => _counters.Snapshot(Interlocked.Read(ref _entries), Interlocked.Read(ref _bytes));

    /// <summary>The file an entry of <paramref name="key"/> lives in (whether or not it exists).</summary>
    public string PathOf(KvCacheKey key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return Path.Combine(Directory, $"{key.TenantHash}-{key.ModelHash}-{key.DocumentHash}-{key.Hash}{Extension}");
    }

    /// <inheritdoc/>
    public ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        string path = PathOf(key);
        DocumentKvCache? entry;
        long length;
        try
        {
            using var handle = RegularFile.OpenRead(path);
            if (handle is null)
            {
                StoreGuards.Rejected(_logger, _counters, nameof(FileKvCacheStore), key, "the entry's name is not a regular file (a FIFO, device, directory or symlink)");
                return ValueTask.FromResult<DocumentKvCache?>(null);
            }
            length = RandomAccess.GetLength(handle);
            entry = KvCacheFormat.Read(handle, Path.GetFileName(path));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            _counters.Miss();
            return ValueTask.FromResult<DocumentKvCache?>(null);
        }
        catch (Exception e) when (e is KvCacheFormatException or IOException or UnauthorizedAccessException)
        {
            StoreGuards.Rejected(_logger, _counters, nameof(FileKvCacheStore), key, e.Message);
            return ValueTask.FromResult<DocumentKvCache?>(null);
        }
        if (!StoreGuards.BelongsTo(entry, key))
        {
            entry.Dispose();
            StoreGuards.Rejected(_logger, _counters, nameof(FileKvCacheStore), key, "the file holds the entry of another key");
            return ValueTask.FromResult<DocumentKvCache?>(null);
        }
        try { File.SetLastWriteTimeUtc(path, DateTime.UtcNow); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        _counters.Hit(length);
        return ValueTask.FromResult<DocumentKvCache?>(entry);
    }

    /// <inheritdoc/>
    public ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        StoreGuards.EnsureBelongs(entry, key);
        byte[] bytes = KvCacheFormat.Serialize(entry, _options.Quantization);
        if (bytes.Length > _options.ByteBudget)
        {
            _counters.Evict();
            _logger.LogInformation("KV cache store {Store}: entry {Key} ({Bytes} bytes) exceeds the budget and was not written", nameof(FileKvCacheStore), key, bytes.Length);
            return ValueTask.CompletedTask;
        }
        string path = PathOf(key);
        long replaced = -1;
        try { replaced = new FileInfo(path).Length; } catch (IOException) { }
        try { WriteAtomically(path, bytes); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A full or read-only disk costs the cache, never the request.
            _counters.FailedWrite();
            _logger.LogWarning("KV cache store {Store}: write of {Key} failed and was skipped: {Reason}", nameof(FileKvCacheStore), key, e.Message);
            return ValueTask.CompletedTask;
        }
        _counters.Write(bytes.Length);
        if (replaced < 0) Interlocked.Increment(ref _entries);
        Interlocked.Add(ref _bytes, bytes.Length - Math.Max(0, replaced));
        if (_options.ByteBudget != long.MaxValue && Interlocked.Read(ref _bytes) > _options.ByteBudget) Evict();
        return ValueTask.CompletedTask;
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> through a flushed temporary file and a rename.</summary>
    internal static void WriteAtomically(string path, byte[] bytes, Action<int>? afterChunk = null)
    {
        AtomicFile.Write(path, stream =>
        {
            const int chunk = 1 << 20;
            for (int at = 0, i = 0; at < bytes.Length; at += chunk, i++)
            {
                stream.Write(bytes, at, Math.Min(chunk, bytes.Length - at));
                afterChunk?.Invoke(i);
            }
        });
    }

    /// <inheritdoc/>
    /// <exception cref="KvCacheStoreUnavailableException">The file is there but could not be deleted (read-only or immutable file system, permissions).</exception>
    public ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        bool removed = Delete(PathOf(key), throwOnFailure: true);
        if (removed) _counters.Remove();
        return ValueTask.FromResult(removed);
    }

    /// <inheritdoc/>
    public ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(File.Exists(PathOf(key)));

    /// <inheritdoc/>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default) =>
        (await InvalidateKeysAsync(scope, cancellationToken).ConfigureAwait(false)).Count;

    /// <inheritdoc/>
    /// <exception cref="KvCacheStoreUnavailableException">A matching file could not be deleted (the others were).</exception>
    public ValueTask<IReadOnlyCollection<string>> InvalidateKeysAsync(KvCacheScope scope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scope);
        var removed = new List<string>();
        KvCacheStoreUnavailableException? failure = null;
        foreach (var file in EntryFiles())
        {
            var m = EntryName().Match(file.Name);
            if (!scope.MatchesHashes(m.Groups["t"].Value, m.Groups["m"].Value, m.Groups["d"].Value)) continue;
            // Every other match is still removed; the caller then learns that some entry survived.
            try { if (Delete(file.FullName, throwOnFailure: true)) removed.Add(m.Groups["k"].Value); }
            catch (KvCacheStoreUnavailableException e) { failure ??= e; }
        }
        _counters.Remove(removed.Count);
        if (failure is not null) throw new KvCacheStoreUnavailableException($"{nameof(FileKvCacheStore)}: invalidate {scope} removed {removed.Count} entries but not all: {failure.Message}", failure);
        return ValueTask.FromResult<IReadOnlyCollection<string>>(removed);
    }

    /// <summary>Re-reads the directory: entry count and bytes, and (optionally) deletes temp files of writers that died long ago.</summary>
    public void Rescan() => Rescan(cleanTemp: true);

    private void Rescan(bool cleanTemp)
    {
        long entries = 0, bytes = 0;
        foreach (var file in EntryFiles()) { entries++; bytes += SafeLength(file); }
        Interlocked.Exchange(ref _entries, entries);
        Interlocked.Exchange(ref _bytes, bytes);
        if (!cleanTemp) return;
        var cutoff = DateTime.UtcNow - _options.StaleTempFileAge;
        foreach (var temp in new DirectoryInfo(Directory).EnumerateFiles(".*.tmp"))
        {
            try { if (temp.LastWriteTimeUtc < cutoff) temp.Delete(); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>Deletes least recently used files (across all processes) until the directory fits the budget.</summary>
    private void Evict()
    {
        lock (_evictLock)
        {
            var files = EntryFiles().Select(f => (File: f, Length: SafeLength(f), Used: f.LastWriteTimeUtc)).OrderBy(f => f.Used).ToList();
            long total = files.Sum(f => f.Length);
            foreach (var (file, length, _) in files)
            {
                if (total <= _options.ByteBudget) break;
                if (Delete(file.FullName))
                {
                    _counters.Evict();
                    _logger.LogDebug("KV cache store {Store}: evicted {File}", nameof(FileKvCacheStore), file.Name);
                }
                total -= length;
            }
            Rescan(cleanTemp: false);
        }
    }

    private IEnumerable<FileInfo> EntryFiles() =>
        new DirectoryInfo(Directory).EnumerateFiles("*" + Extension).Where(f => EntryName().IsMatch(f.Name));

    private static long SafeLength(FileInfo f)
    {
        try { return f.Length; } catch (IOException) { return 0; }
    }

    /// <summary>Deletes an entry's file; false when it was not there. A file that stays is logged, and thrown for removals (an eviction just moves on).</summary>
    private bool Delete(string path, bool throwOnFailure = false)
    {
        try
        {
            if (!File.Exists(path)) return false;
            long length = new FileInfo(path).Length;
            File.Delete(path);
            Interlocked.Decrement(ref _entries);
            Interlocked.Add(ref _bytes, -length);
            return true;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return false; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning("KV cache store {Store}: could not delete {Path}: {Reason}", nameof(FileKvCacheStore), path, e.Message);
            if (throwOnFailure) throw new KvCacheStoreUnavailableException($"{nameof(FileKvCacheStore)}: could not delete {Path.GetFileName(path)}: {e.Message}", e);
            return false;
        }
    }

    [GeneratedRegex("^(?<t>[0-9a-f]{16})-(?<m>[0-9a-f]{16})-(?<d>[0-9a-f]{16})-(?<k>[0-9a-f]{32})\\.kvc$")]
    private static partial Regex EntryName();
}
