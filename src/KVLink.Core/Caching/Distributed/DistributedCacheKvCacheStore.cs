using System.Globalization;
using System.Text;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KVLink.Core.Caching;

/// <summary>
/// A store over any <see cref="IDistributedCache"/> (Redis, Garnet, SQL Server, a database, a memory cache...).
/// Each entry is its <see cref="KvCacheFormat"/> bytes split into chunks under a per-write id, plus a manifest
/// naming that write, written after the chunks: a reader sees a whole entry or a miss, and the checksum catches
/// anything else. Every cache key starts with the prefix and the tenant's hash:
/// <c>{prefix}:{tenant16}:m:{key32}</c> (manifest), <c>{prefix}:{tenant16}:c:{key32}:{write}:{i}</c> (chunks),
/// <c>{prefix}:{tenant16}:ix</c> (the tenant's index, for invalidation); <c>{prefix}:ix:tenants</c> lists the
/// tenants' hashes. <see cref="IDistributedCache"/> has no sets, scans or atomic updates, so the indexes are
/// read-modify-write values: exact within one process (updates are serialized), but two processes updating one
/// tenant's index at the same instant can lose a line, leaving that entry out of a later invalidation (it still
/// expires with <see cref="DistributedCacheKvCacheStoreOptions.TimeToLive"/>). Cache errors are logged and read as
/// misses (a read) or skipped (a write): a cache outage never fails a request.
/// </summary>
public sealed class DistributedCacheKvCacheStore : IKvCacheStore, IKvCacheStoreInvalidation, IDisposable
{
    private const int Stripes = 64;
    private readonly IDistributedCache _cache;
    private readonly DistributedCacheKvCacheStoreOptions _options;
    private readonly ILogger _logger;
    private readonly StoreCounters _counters = new();
    private readonly SemaphoreSlim[] _keyLocks = [.. Enumerable.Range(0, Stripes).Select(_ => new SemaphoreSlim(1, 1))];
    private readonly SemaphoreSlim _indexLock = new(1, 1);
    private long _entries, _bytes;

    /// <summary>Creates a store over <paramref name="cache"/> (which the caller keeps owning).</summary>
    public DistributedCacheKvCacheStore(IDistributedCache cache, DistributedCacheKvCacheStoreOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(cache);
        _cache = cache;
        _options = options ?? new DistributedCacheKvCacheStoreOptions();
        ArgumentException.ThrowIfNullOrWhiteSpace(_options.KeyPrefix);
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.ChunkBytes, 1024);
        if (_options.TimeToLive is { } ttl) ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        _logger = _options.Logger ?? NullLogger.Instance;
    }

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics => _counters.Snapshot(Interlocked.Read(ref _entries), Interlocked.Read(ref _bytes));

    internal string ManifestKey(KvCacheKey key) => ManifestKey(key.TenantHash, key.Hash);
    internal string ChunkKey(KvCacheKey key, string write, int i) => ChunkKey(key.TenantHash, key.Hash, write, i);
    private string ManifestKey(string tenant, string hash) => $"{_options.KeyPrefix}:{tenant}:m:{hash}";
    private string ChunkKey(string tenant, string hash, string write, int i) =>
        $"{_options.KeyPrefix}:{tenant}:c:{hash}:{write}:{i.ToString(CultureInfo.InvariantCulture)}";
    private string IndexKey(string tenant) => $"{_options.KeyPrefix}:{tenant}:ix";
    private string TenantsKey => $"{_options.KeyPrefix}:ix:tenants";

    /// <summary>Manifest text: "v1 write-id chunk-count byte-length tenant-hash model-hash document-hash".</summary>
    internal sealed record ManifestInfo(string Write, int Chunks, long Length, string Tenant, string Model, string Document)
    {
        public byte[] ToBytes() => Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"v1 {Write} {Chunks} {Length} {Tenant} {Model} {Document}"));

        public static ManifestInfo? Parse(byte[]? value)
        {
            if (value is null || value.Length is 0 or > 512) return null;
            var p = Encoding.ASCII.GetString(value).Split(' ');
            if (p.Length != 7 || p[0] != "v1" || p[1].Length != 32
                || !int.TryParse(p[2], NumberStyles.None, CultureInfo.InvariantCulture, out int chunks) || chunks is < 1 or > 1 << 20
                || !long.TryParse(p[3], NumberStyles.None, CultureInfo.InvariantCulture, out long length)) return null;
            return new ManifestInfo(p[1], chunks, length, p[4], p[5], p[6]);
        }
    }

    /// <inheritdoc/>
    public async ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        byte[] bytes;
        try
        {
            var raw = await _cache.GetAsync(ManifestKey(key), cancellationToken).ConfigureAwait(false);
            if (raw is null) { _counters.Miss(); return null; }
            var manifest = ManifestInfo.Parse(raw);
            if (manifest is null || manifest.Tenant != key.TenantHash)
            {
                StoreGuards.Rejected(_logger, _counters, nameof(DistributedCacheKvCacheStore), key, "malformed manifest");
                return null;
            }
            var chunks = await Task.WhenAll(Enumerable.Range(0, manifest.Chunks)
                .Select(i => _cache.GetAsync(ChunkKey(key, manifest.Write, i), cancellationToken))).ConfigureAwait(false);
            // A chunk gone means the entry was replaced, removed or expired while we read: a plain miss.
            if (chunks.Any(c => c is null)) { _counters.Miss(); return null; }
            var joined = StoreGuards.Concatenate([.. chunks.Select(c => c!)], manifest.Length);
            if (joined is null)
            {
                StoreGuards.Rejected(_logger, _counters, nameof(DistributedCacheKvCacheStore), key, "chunks do not add up to the manifest's length");
                return null;
            }
            bytes = joined;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _counters.Miss();
            _logger.LogWarning("KV cache store {Store}: read of {Key} failed, treated as a miss: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
            return null;
        }

        return StoreGuards.Decode(bytes, key, _logger, _counters, nameof(DistributedCacheKvCacheStore));
    }

    /// <inheritdoc/>
    public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        StoreGuards.EnsureBelongs(entry, key);
        byte[] bytes = KvCacheFormat.Serialize(entry, _options.Compression);
        string write = Guid.NewGuid().ToString("N");
        int size = _options.ChunkBytes;
        int count = StoreGuards.ChunkCount(bytes.Length, size);
        var manifestOptions = new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = _options.TimeToLive };
        // Chunks outlive their manifest a little, so a reader that got the manifest finds them.
        var chunkOptions = new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = _options.TimeToLive + TimeSpan.FromMinutes(1) };
        var gate = KeyLock(key.Hash);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await Task.WhenAll(Enumerable.Range(0, count).Select(i =>
                _cache.SetAsync(ChunkKey(key, write, i), bytes[(i * size)..Math.Min(bytes.Length, (i + 1) * size)], chunkOptions, cancellationToken))).ConfigureAwait(false);
            var previous = ManifestInfo.Parse(await _cache.GetAsync(ManifestKey(key), cancellationToken).ConfigureAwait(false));
            var manifest = new ManifestInfo(write, count, bytes.Length, key.TenantHash, key.ModelHash, key.DocumentHash);
            await _cache.SetAsync(ManifestKey(key), manifest.ToBytes(), manifestOptions, cancellationToken).ConfigureAwait(false);
            if (previous is not null) await DeleteChunks(key.Hash, previous, cancellationToken).ConfigureAwait(false);
            else Interlocked.Increment(ref _entries);
            Interlocked.Add(ref _bytes, bytes.Length - (previous?.Length ?? 0));
            _counters.Write(bytes.Length);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _logger.LogWarning("KV cache store {Store}: write of {Key} failed and was skipped: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
            return;
        }
        finally { gate.Release(); }
        await UpdateIndex(key.TenantHash, lines => { lines.Add(Line(key.Hash, key.ModelHash, key.DocumentHash)); return Task.CompletedTask; }, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    public async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        bool removed;
        try { removed = await RemoveEntry(key.TenantHash, key.Hash, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _logger.LogWarning("KV cache store {Store}: removal of {Key} failed: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
            return false;
        }
        if (!removed) return false;
        _counters.Remove();
        // Unless a writer put the entry back meanwhile, its index line goes too.
        await UpdateIndex(key.TenantHash, async lines =>
        {
            if (await _cache.GetAsync(ManifestKey(key), cancellationToken).ConfigureAwait(false) is null)
                lines.RemoveWhere(l => l.StartsWith(key.Hash, StringComparison.Ordinal));
        }, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <inheritdoc/>
    public async ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        try { return await _cache.GetAsync(ManifestKey(key), cancellationToken).ConfigureAwait(false) is not null; }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _logger.LogWarning("KV cache store {Store}: lookup of {Key} failed: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
            return false;
        }
    }

    /// <inheritdoc/>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default) =>
        (await InvalidateKeysAsync(scope, cancellationToken).ConfigureAwait(false)).Count;

    /// <inheritdoc/>
    public async ValueTask<IReadOnlyCollection<string>> InvalidateKeysAsync(KvCacheScope scope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scope);
        var removed = new List<string>();
        await _indexLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var tenants = scope.Tenant is not null
                ? new SortedSet<string>(StringComparer.Ordinal) { KvCacheKey.HashOf("tenant", scope.Tenant)[..16] }
                : ReadLines(await _cache.GetAsync(TenantsKey, cancellationToken).ConfigureAwait(false));
            foreach (string tenant in tenants)
            {
                var lines = ReadLines(await _cache.GetAsync(IndexKey(tenant), cancellationToken).ConfigureAwait(false));
                var keep = new SortedSet<string>(StringComparer.Ordinal);
                foreach (string line in lines)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var p = line.Split(' ');
                    if (p.Length != 3) continue;
                    if (!scope.MatchesHashes(tenant, p[1], p[2])) { keep.Add(line); continue; }
                    if (await RemoveEntry(tenant, p[0], cancellationToken).ConfigureAwait(false)) removed.Add(p[0]);
                }
                await WriteLines(IndexKey(tenant), keep, cancellationToken).ConfigureAwait(false);
                if (keep.Count == 0)
                {
                    var all = ReadLines(await _cache.GetAsync(TenantsKey, cancellationToken).ConfigureAwait(false));
                    if (all.Remove(tenant)) await WriteLines(TenantsKey, all, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _logger.LogWarning("KV cache store {Store}: invalidation of {Scope} stopped: {Reason}", nameof(DistributedCacheKvCacheStore), scope, e.Message);
        }
        finally { _indexLock.Release(); }
        _counters.Remove(removed.Count);
        return removed;
    }

    /// <summary>Releases the store's locks (not the cache, which the caller owns).</summary>
    public void Dispose()
    {
        foreach (var gate in _keyLocks) gate.Dispose();
        _indexLock.Dispose();
    }

    private SemaphoreSlim KeyLock(string hash) => _keyLocks[Convert.ToInt32(hash[..4], 16) % Stripes];

    /// <summary>Deletes the manifest and then the chunks of one entry; false when it was not there.</summary>
    private async Task<bool> RemoveEntry(string tenant, string hash, CancellationToken cancellationToken)
    {
        var gate = KeyLock(hash);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var manifest = ManifestInfo.Parse(await _cache.GetAsync(ManifestKey(tenant, hash), cancellationToken).ConfigureAwait(false));
            if (manifest is null) return false;
            await _cache.RemoveAsync(ManifestKey(tenant, hash), cancellationToken).ConfigureAwait(false);
            await DeleteChunks(hash, manifest, cancellationToken).ConfigureAwait(false);
            Interlocked.Decrement(ref _entries);
            Interlocked.Add(ref _bytes, -manifest.Length);
            return true;
        }
        finally { gate.Release(); }
    }

    private Task DeleteChunks(string hash, ManifestInfo manifest, CancellationToken cancellationToken) =>
        Task.WhenAll(Enumerable.Range(0, manifest.Chunks).Select(i => _cache.RemoveAsync(ChunkKey(manifest.Tenant, hash, manifest.Write, i), cancellationToken)));

    private static string Line(string hash, string model, string document) => $"{hash} {model} {document}";

    /// <summary>Read-modify-write of a tenant's index (and the tenant list), serialized within this process.</summary>
    private async Task UpdateIndex(string tenant, Func<SortedSet<string>, Task> change, CancellationToken cancellationToken)
    {
        await _indexLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var lines = ReadLines(await _cache.GetAsync(IndexKey(tenant), cancellationToken).ConfigureAwait(false));
            var before = new SortedSet<string>(lines, StringComparer.Ordinal);
            await change(lines).ConfigureAwait(false);
            if (!lines.SetEquals(before)) await WriteLines(IndexKey(tenant), lines, cancellationToken).ConfigureAwait(false);
            if (lines.Count > 0)
            {
                var tenants = ReadLines(await _cache.GetAsync(TenantsKey, cancellationToken).ConfigureAwait(false));
                if (tenants.Add(tenant)) await WriteLines(TenantsKey, tenants, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _logger.LogWarning("KV cache store {Store}: index update for tenant {Tenant} failed: {Reason}", nameof(DistributedCacheKvCacheStore), tenant, e.Message);
        }
        finally { _indexLock.Release(); }
    }

    /// <summary>Well-formed lines of an index value (hex hashes separated by single spaces); anything else is dropped.</summary>
    private static SortedSet<string> ReadLines(byte[]? value)
    {
        var lines = new SortedSet<string>(StringComparer.Ordinal);
        if (value is null) return lines;
        foreach (string line in Encoding.ASCII.GetString(value).Split('\n', StringSplitOptions.RemoveEmptyEntries))
            if (line.Split(' ') is var p && (p.Length == 1 && IsHex(p[0], 16) || p.Length == 3 && IsHex(p[0], 32) && IsHex(p[1], 16) && IsHex(p[2], 16)))
                lines.Add(line);
        return lines;
    }

    private static bool IsHex(string s, int length) => s.Length == length && s.All(char.IsAsciiHexDigitLower);

    private Task WriteLines(string cacheKey, SortedSet<string> lines, CancellationToken cancellationToken) =>
        lines.Count == 0
            ? _cache.RemoveAsync(cacheKey, cancellationToken)
            : _cache.SetAsync(cacheKey, Encoding.ASCII.GetBytes(string.Join('\n', lines)), new DistributedCacheEntryOptions(), cancellationToken);
}
