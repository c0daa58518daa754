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
/// anything else. Every cache key starts with the prefix, the layout version and the tenant's hash:
/// <c>{prefix}:v2:{tenant16}:m:{key32}</c> (manifest), <c>{prefix}:v2:{tenant16}:c:{key32}:{write}:{i}</c> (chunks),
/// <c>{prefix}:v2:{tenant16}:ix</c> (the tenant's index, for invalidation); <c>{prefix}:v2:ix:tenants</c> lists the
/// tenants' hashes. <see cref="IDistributedCache"/> has no sets, scans or atomic updates, so the indexes are
/// read-modify-write values: exact within one process (updates are serialized), but two processes updating one
/// tenant's index at the same instant can lose a line, leaving that entry out of a later invalidation (it still
/// expires with <see cref="DistributedCacheKvCacheStoreOptions.TimeToLive"/>). Cache errors are logged and read as
/// misses (a read, <see cref="KvCacheStoreStatistics.Unavailable"/>) or skipped (a write, <see cref="KvCacheStoreStatistics.FailedWrites"/>):
/// a cache outage never fails a request. Each call is bounded by <see cref="DistributedCacheKvCacheStoreOptions.OperationTimeout"/>
/// and a circuit skips the cache after <see cref="DistributedCacheKvCacheStoreOptions.FailuresBeforeBreak"/> failures in a row.
/// A removal or invalidation that fails throws <see cref="KvCacheStoreUnavailableException"/>.
/// </summary>
public sealed class DistributedCacheKvCacheStore : IKvCacheStore, IKvCacheStoreInvalidation, IDisposable
{
    private const int Stripes = 64;
    /// <summary>Chunk requests in flight at once for one entry: bounds the tasks a read makes, and a missing chunk stops it early.</summary>
    private const int Parallel = 16;
    private readonly IDistributedCache _cache;
    private readonly DistributedCacheKvCacheStoreOptions _options;
    private readonly ILogger _logger;
    private readonly CircuitBreaker _circuit;
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
        ArgumentOutOfRangeException.ThrowIfLessThan(_options.ChunkBytes, ChunkManifest.MinChunkBytes);
        if (_options.TimeToLive is { } ttl) ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        _circuit = CircuitBreaker.Create(nameof(DistributedCacheKvCacheStoreOptions), nameof(DistributedCacheKvCacheStore), _options.MaxEntryBytes,
            _options.OperationTimeout, _options.FailuresBeforeBreak, _options.BreakDuration, _options.TimeProvider);
        _logger = _options.Logger ?? NullLogger.Instance;
    }

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics => _counters.Snapshot(Interlocked.Read(ref _entries), Interlocked.Read(ref _bytes));

    internal string ManifestKey(KvCacheKey key) => ManifestKey(key.TenantHash, key.Hash);
    internal string ChunkKey(KvCacheKey key, string write, int i) => ChunkKey(key.TenantHash, key.Hash, write, i);
    private string ManifestKey(string tenant, string hash) => $"{_options.KeyPrefix}:v2:{tenant}:m:{hash}";
    private string ChunkKey(string tenant, string hash, string write, int i) =>
        $"{_options.KeyPrefix}:v2:{tenant}:c:{hash}:{write}:{i.ToString(CultureInfo.InvariantCulture)}";
    private string IndexKey(string tenant) => $"{_options.KeyPrefix}:v2:{tenant}:ix";
    private string TenantsKey => $"{_options.KeyPrefix}:v2:ix:tenants";

    /// <summary>One call to the cache, bounded by the operation timeout and skipped while the circuit is open. Any failure counts: an <see cref="IDistributedCache"/> does not say which errors are outages.</summary>
    private Task<T> Call<T>(Func<CancellationToken, Task<T>> operation, CancellationToken cancellationToken) =>
        _circuit.RunAsync(operation, static _ => true, cancellationToken);

    private Task<bool> Call(Func<CancellationToken, Task> operation, CancellationToken cancellationToken) =>
        Call(async t => { await operation(t).ConfigureAwait(false); return true; }, cancellationToken);

    /// <inheritdoc/>
    public async ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ChunkRead read;
        try { read = await Call(t => ReadChunks(key, t), cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _counters.Unavailable();
            _logger.LogWarning("KV cache store {Store}: read of {Key} failed, treated as a miss: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
            return null;
        }
        return read.Finish(key, _logger, _counters, nameof(DistributedCacheKvCacheStore));
    }

    private async Task<ChunkRead> ReadChunks(KvCacheKey key, CancellationToken cancellationToken)
    {
        var raw = await _cache.GetAsync(ManifestKey(key), cancellationToken).ConfigureAwait(false);
        if (raw is null) return ChunkRead.Miss;
        var manifest = ParseManifest(raw);
        if (manifest is null || manifest.Tenant != key.TenantHash) return ChunkRead.Rejected("malformed manifest");
        var chunks = new byte[manifest.Chunks][];
        for (int start = 0; start < manifest.Chunks; start += Parallel)
        {
            int n = Math.Min(Parallel, manifest.Chunks - start);
            var batch = await Task.WhenAll(Enumerable.Range(start, n)
                .Select(i => _cache.GetAsync(ChunkKey(key, manifest.Write, i), cancellationToken))).ConfigureAwait(false);
            for (int i = 0; i < n; i++)
            {
                // A chunk gone means the entry was replaced, removed or expired while we read: a plain miss.
                if (batch[i] is null) return ChunkRead.Miss;
                chunks[start + i] = batch[i]!;
            }
        }
        return ChunkRead.Of(chunks, manifest);
    }

    /// <summary>A manifest from the cache, bounded by this store's settings (<see cref="ChunkManifest.Parse"/>); null when it is not one of its entries.</summary>
    private ChunkManifest? ParseManifest(byte[]? raw) =>
        raw is null || raw.Length > 256 ? null : ChunkManifest.Parse(Encoding.ASCII.GetString(raw), _options.MaxEntryBytes, _options.ChunkBytes);

    /// <inheritdoc/>
    public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        StoreGuards.EnsureBelongs(entry, key);
        byte[] bytes = KvCacheFormat.Serialize(entry, _options.Quantization);
        if (bytes.Length > _options.MaxEntryBytes)
        {
            _counters.Evict();
            _logger.LogInformation("KV cache store {Store}: entry {Key} ({Bytes} bytes) exceeds MaxEntryBytes and was not written", nameof(DistributedCacheKvCacheStore), key, bytes.Length);
            return;
        }
        var manifest = ChunkManifest.For(key, bytes.Length, _options.ChunkBytes);
        ChunkManifest? previous;
        try { previous = await Call(t => Write(key, bytes, manifest, t), cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _counters.FailedWrite();
            _logger.LogWarning("KV cache store {Store}: write of {Key} failed and was skipped: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
            return;
        }
        // The cache accepted the manifest: the entry is written, whatever happens to the old chunks below.
        if (previous is null) Interlocked.Increment(ref _entries);
        Interlocked.Add(ref _bytes, bytes.Length - (previous?.Length ?? 0));
        _counters.Write(bytes.Length);
        if (previous is null || previous.Write == manifest.Write) return;
        try { await Call(t => DeleteChunks(key.Hash, previous, t), cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning("KV cache store {Store}: chunks of the replaced entry {Key} were left behind: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
        }
    }

    /// <summary>Chunks, then the index line, then the manifest (under the key's lock); returns the manifest it replaced.</summary>
    private async Task<ChunkManifest?> Write(KvCacheKey key, byte[] bytes, ChunkManifest manifest, CancellationToken cancellationToken)
    {
        var manifestOptions = new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = _options.TimeToLive };
        // Chunks outlive their manifest a little, so a reader that got the manifest finds them.
        var chunkOptions = new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = _options.TimeToLive + TimeSpan.FromMinutes(1) };
        await Task.WhenAll(Enumerable.Range(0, manifest.Chunks).Select(i =>
            _cache.SetAsync(ChunkKey(key, manifest.Write, i), manifest.Slice(bytes, i).ToArray(), chunkOptions, cancellationToken))).ConfigureAwait(false);
        // Indexed before the manifest is visible, so no entry can be served that an invalidation would not find
        // (a line without a manifest is dropped by the next invalidation). Not under the key's lock: invalidation takes them in the other order.
        await UpdateIndex(key.TenantHash, lines => { lines.Add(Line(key.Hash, key.ModelHash, key.DocumentHash)); return Task.CompletedTask; }, cancellationToken).ConfigureAwait(false);
        var gate = KeyLock(key.Hash);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var old = await _cache.GetAsync(ManifestKey(key), cancellationToken).ConfigureAwait(false);
            var previous = ParseManifest(old);
            await _cache.SetAsync(ManifestKey(key), Encoding.ASCII.GetBytes(manifest.ToString()), manifestOptions, cancellationToken).ConfigureAwait(false);
            if (previous is null && old is not null)
                _logger.LogWarning("KV cache store {Store}: replaced a manifest of {Key} that is not an entry of this store (malformed, or naming more chunks than MaxEntryBytes / ChunkBytes); nothing it names was read or deleted", nameof(DistributedCacheKvCacheStore), key);
            return previous;
        }
        finally { gate.Release(); }
    }

    /// <inheritdoc/>
    public async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        bool removed;
        try { removed = await Call(t => RemoveEntry(key.TenantHash, key.Hash, t), cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested) { throw Unavailable("remove " + key, e); }
        if (!removed) return false;
        _counters.Remove();
        // Unless a writer put the entry back meanwhile, its index line goes too; a line left behind is harmless.
        try
        {
            await Call(t => UpdateIndex(key.TenantHash, async lines =>
            {
                if (await _cache.GetAsync(ManifestKey(key), t).ConfigureAwait(false) is null)
                    lines.RemoveWhere(l => l.StartsWith(key.Hash, StringComparison.Ordinal));
            }, t), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning("KV cache store {Store}: index line of the removed {Key} was left behind: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
        }
        return true;
    }

    /// <inheritdoc/>
    public async ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        try { return await Call(async t => await _cache.GetAsync(ManifestKey(key), t).ConfigureAwait(false) is not null, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
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
            // One bounded call per cache operation, so a long invalidation is not cut by the operation timeout.
            var tenants = scope.Tenant is not null
                ? new SortedSet<string>(StringComparer.Ordinal) { KvCacheKey.HashOf("tenant", scope.Tenant)[..16] }
                : ReadLines(await Call(t => _cache.GetAsync(TenantsKey, t), cancellationToken).ConfigureAwait(false));
            foreach (string tenant in tenants)
            {
                var lines = ReadLines(await Call(t => _cache.GetAsync(IndexKey(tenant), t), cancellationToken).ConfigureAwait(false));
                var keep = new SortedSet<string>(StringComparer.Ordinal);
                foreach (string line in lines)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var p = line.Split(' ');
                    if (p.Length != 3) continue;
                    if (!scope.MatchesHashes(tenant, p[1], p[2])) { keep.Add(line); continue; }
                    if (await Call(t => RemoveEntry(tenant, p[0], t), cancellationToken).ConfigureAwait(false)) removed.Add(p[0]);
                }
                await Call(t => WriteLines(IndexKey(tenant), keep, t), cancellationToken).ConfigureAwait(false);
                if (keep.Count == 0)
                {
                    var all = ReadLines(await Call(t => _cache.GetAsync(TenantsKey, t), cancellationToken).ConfigureAwait(false));
                    if (all.Remove(tenant)) await Call(t => WriteLines(TenantsKey, all, t), cancellationToken).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _counters.Remove(removed.Count);
            throw Unavailable($"invalidate {scope} (after removing {removed.Count})", e);
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

    /// <summary>Deletes the manifest and then the chunks of one entry; false when there was no valid entry (junk under its name is deleted).</summary>
    private async Task<bool> RemoveEntry(string tenant, string hash, CancellationToken cancellationToken)
    {
        var gate = KeyLock(hash);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var raw = await _cache.GetAsync(ManifestKey(tenant, hash), cancellationToken).ConfigureAwait(false);
            if (raw is null) return false;
            var manifest = ParseManifest(raw);
            await _cache.RemoveAsync(ManifestKey(tenant, hash), cancellationToken).ConfigureAwait(false);
            if (manifest is null) return false;
            await DeleteChunks(hash, manifest, cancellationToken).ConfigureAwait(false);
            Interlocked.Decrement(ref _entries);
            Interlocked.Add(ref _bytes, -manifest.Length);
            return true;
        }
        finally { gate.Release(); }
    }

    /// <summary>
    /// Removes the chunks <paramref name="manifest"/> names, once its last chunk shows they were written. Chunks are
    /// written before their manifest and outlive it, so a last chunk that is not there means the entry's chunks were
    /// never written (a planted manifest: one read, whatever it claims) or are going the same way (expired, evicted,
    /// or removed by another process that replaced the entry). <see cref="IDistributedCache"/> cannot say whether a
    /// key exists without reading it, so this reads the last chunk, the short remainder of most entries. The work is
    /// bounded by <see cref="ChunkManifest.MaxChunks"/> since the manifest parsed.
    /// </summary>
    private async Task DeleteChunks(string hash, ChunkManifest manifest, CancellationToken cancellationToken)
    {
        if (await _cache.GetAsync(ChunkKey(manifest.Tenant, hash, manifest.Write, manifest.Chunks - 1), cancellationToken).ConfigureAwait(false) is null) return;
        for (int start = 0; start < manifest.Chunks; start += Parallel)
            await Task.WhenAll(Enumerable.Range(start, Math.Min(Parallel, manifest.Chunks - start))
                .Select(i => _cache.RemoveAsync(ChunkKey(manifest.Tenant, hash, manifest.Write, i), cancellationToken))).ConfigureAwait(false);
    }

    private static string Line(string hash, string model, string document) => $"{hash} {model} {document}";

    private KvCacheStoreUnavailableException Unavailable(string what, Exception e)
    {
        if (e is KvCacheStoreUnavailableException skipped) return skipped;
        _logger.LogWarning("KV cache store {Store}: could not {What}: {Reason}", nameof(DistributedCacheKvCacheStore), what, e.Message);
        return new KvCacheStoreUnavailableException($"{nameof(DistributedCacheKvCacheStore)}: could not {what}: the cache failed ({e.Message}).", e);
    }

    /// <summary>Read-modify-write of a tenant's index (and the tenant list), serialized within this process; throws when the cache fails.</summary>
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
