using System.Globalization;
using System.Text;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Logging;

namespace KVLink.Core.Caching;

/// <summary>
/// A <see cref="ChunkedKvCacheStore"/> over any <see cref="IDistributedCache"/> (Redis, Garnet, SQL Server, a database,
/// a memory cache...). Every cache key starts with the prefix, the layout version and the tenant's hash:
/// <c>{prefix}:v2:{tenant16}:m:{key32}</c> (manifest), <c>{prefix}:v2:{tenant16}:c:{key32}:{write}:{i}</c> (chunks),
/// <c>{prefix}:v2:{tenant16}:ix</c> (the tenant's index, for invalidation); <c>{prefix}:v2:ix:tenants</c> lists the
/// tenants' hashes. <see cref="IDistributedCache"/> has no sets, scans or atomic updates, so the indexes are
/// read-modify-write values: exact within one process (updates are serialized), but two processes updating one
/// tenant's index at the same instant can lose a line, leaving that entry out of a later invalidation (it still
/// expires with <see cref="ChunkedKvCacheStoreOptions.TimeToLive"/>). Any failure of the cache counts towards the
/// circuit: an <see cref="IDistributedCache"/> does not say which errors are outages.
/// </summary>
public sealed class DistributedCacheKvCacheStore : ChunkedKvCacheStore, IDisposable
{
    private const int Stripes = 64;
    /// <summary>Chunk requests in flight at once for one entry: bounds the tasks a read makes, and a missing chunk stops it early.</summary>
    private const int Parallel = 16;
    private readonly IDistributedCache _cache;
    private readonly ChunkedKvCacheStoreOptions _options;
    private readonly SemaphoreSlim[] _keyLocks = [.. Enumerable.Range(0, Stripes).Select(_ => new SemaphoreSlim(1, 1))];
    private readonly SemaphoreSlim _indexLock = new(1, 1);

    /// <summary>Creates a store over <paramref name="cache"/> (which the caller keeps owning).</summary>
    /// <exception cref="ArgumentException">A setting of <paramref name="options"/> out of range: the message names it.</exception>
    public DistributedCacheKvCacheStore(IDistributedCache cache, ChunkedKvCacheStoreOptions? options = null)
        : base(options ??= new ChunkedKvCacheStoreOptions(), Parallel)
    {
        ArgumentNullException.ThrowIfNull(cache);
        _cache = cache;
        _options = options;
    }

    internal string ManifestKey(KvCacheKey key) => ManifestKey(key.TenantHash, key.Hash);
    internal string ChunkKey(KvCacheKey key, string write, int i) => ChunkKey(key.TenantHash, key.Hash, write, i);
    private string ManifestKey(string tenant, string hash) => $"{_options.KeyPrefix}:v2:{tenant}:m:{hash}";
    private string ChunkKey(string tenant, string hash, string write, int i) =>
        $"{_options.KeyPrefix}:v2:{tenant}:c:{hash}:{write}:{i.ToString(CultureInfo.InvariantCulture)}";
    private string IndexKey(string tenant) => $"{_options.KeyPrefix}:v2:{tenant}:ix";
    private string TenantsKey => $"{_options.KeyPrefix}:v2:ix:tenants";

    /// <summary>A manifest value as text; past 256 bytes (the longest manifest) only enough of it to be refused.</summary>
    private static string? Text(byte[]? raw) => raw is null ? null : Encoding.ASCII.GetString(raw, 0, Math.Min(raw.Length, 257));

    /// <inheritdoc/>
    protected override async Task<string?> GetManifestAsync(string tenantHash, string hash, CancellationToken cancellationToken) =>
        Text(await _cache.GetAsync(ManifestKey(tenantHash, hash), cancellationToken).ConfigureAwait(false));

    /// <inheritdoc/>
    protected override async Task<string?> SwapManifestAsync(KvCacheKey key, string manifest, TimeSpan? timeToLive, CancellationToken cancellationToken)
    {
        var gate = KeyLock(key.Hash);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var old = await _cache.GetAsync(ManifestKey(key), cancellationToken).ConfigureAwait(false);
            await _cache.SetAsync(ManifestKey(key), Encoding.ASCII.GetBytes(manifest), new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = timeToLive }, cancellationToken).ConfigureAwait(false);
            return Text(old);
        }
        finally { gate.Release(); }
    }

    /// <inheritdoc/>
    protected override async Task<string?> DeleteManifestAsync(string tenantHash, string hash, CancellationToken cancellationToken)
    {
        var gate = KeyLock(hash);
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var raw = await _cache.GetAsync(ManifestKey(tenantHash, hash), cancellationToken).ConfigureAwait(false);
            if (raw is not null) await _cache.RemoveAsync(ManifestKey(tenantHash, hash), cancellationToken).ConfigureAwait(false);
            return Text(raw);
        }
        finally { gate.Release(); }
    }

    /// <inheritdoc/>
    protected override async Task<IReadOnlyList<byte[]?>> GetChunksAsync(string tenantHash, string hash, string write, int first, int count, CancellationToken cancellationToken) =>
        await Task.WhenAll(Enumerable.Range(first, count).Select(i => _cache.GetAsync(ChunkKey(tenantHash, hash, write, i), cancellationToken))).ConfigureAwait(false);

    /// <inheritdoc/>
    protected override Task SetChunkAsync(string tenantHash, string hash, string write, int index, ReadOnlyMemory<byte> value, TimeSpan? timeToLive, CancellationToken cancellationToken) =>
        _cache.SetAsync(ChunkKey(tenantHash, hash, write, index), value.ToArray(), new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = timeToLive }, cancellationToken);

    /// <summary>
    /// Removes the chunks once the last one shows they were written. Chunks are written before their manifest and
    /// outlive it, so a last chunk that is not there means the entry's chunks were never written (a planted manifest:
    /// one read, whatever it claims) or are going the same way (expired, evicted, or removed by another process that
    /// replaced the entry). <see cref="IDistributedCache"/> cannot say whether a key exists without reading it, so
    /// this reads the last chunk, the short remainder of most entries.
    /// </summary>
    protected override async Task DeleteChunksAsync(string tenantHash, string hash, string write, int count, CancellationToken cancellationToken)
    {
        if (await _cache.GetAsync(ChunkKey(tenantHash, hash, write, count - 1), cancellationToken).ConfigureAwait(false) is null) return;
        for (int start = 0; start < count; start += Parallel)
            await Task.WhenAll(Enumerable.Range(start, Math.Min(Parallel, count - start))
                .Select(i => _cache.RemoveAsync(ChunkKey(tenantHash, hash, write, i), cancellationToken))).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    /// <remarks>Not under the key's lock: invalidation takes them in the other order.</remarks>
    protected override Task IndexAsync(KvCacheKey key, CancellationToken cancellationToken) =>
        UpdateIndex(key.TenantHash, lines => { lines.Add(Line(key.Hash, key.ModelHash, key.DocumentHash)); return Task.CompletedTask; }, cancellationToken);

    /// <summary>Nothing here: <see cref="RemoveAsync"/> and invalidation, which hold the index's lock, drop the line.</summary>
    protected override Task UnindexAsync(string hash, string tenantHash, string modelHash, string documentHash, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc/>
    public override async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        if (!await base.RemoveAsync(key, cancellationToken).ConfigureAwait(false)) return false;
        // Unless a writer put the entry back meanwhile, its index line goes too; a line left behind is harmless.
        try
        {
            await CallAsync(async t =>
            {
                await UpdateIndex(key.TenantHash, async lines =>
                {
                    if (await _cache.GetAsync(ManifestKey(key), t).ConfigureAwait(false) is null)
                        lines.RemoveWhere(l => l.StartsWith(key.Hash, StringComparison.Ordinal));
                }, t).ConfigureAwait(false);
                return true;
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            Logger.LogWarning("KV cache store {Store}: index line of the removed {Key} was left behind: {Reason}", nameof(DistributedCacheKvCacheStore), key, e.Message);
        }
        return true;
    }

    /// <inheritdoc/>
    /// <remarks>One bounded call per cache operation, so a long invalidation is not cut by the operation timeout.</remarks>
    protected override async Task InvalidateEntriesAsync(KvCacheScope scope, ICollection<string> removed, CancellationToken cancellationToken)
    {
        await _indexLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var tenants = scope.Tenant is not null
                ? new SortedSet<string>(StringComparer.Ordinal) { KvCacheKey.HashOf("tenant", scope.Tenant)[..16] }
                : ReadLines(await CallAsync(t => _cache.GetAsync(TenantsKey, t), cancellationToken).ConfigureAwait(false));
            foreach (string tenant in tenants)
            {
                var lines = ReadLines(await CallAsync(t => _cache.GetAsync(IndexKey(tenant), t), cancellationToken).ConfigureAwait(false));
                var keep = new SortedSet<string>(StringComparer.Ordinal);
                foreach (string line in lines)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var p = line.Split(' ');
                    if (p.Length != 3) continue;
                    if (!scope.MatchesHashes(tenant, p[1], p[2])) { keep.Add(line); continue; }
                    if (await CallAsync(t => RemoveEntryAsync(tenant, p[0], null, t), cancellationToken).ConfigureAwait(false) == true) removed.Add(p[0]);
                }
                await Call(t => WriteLines(IndexKey(tenant), keep, t), cancellationToken).ConfigureAwait(false);
                if (keep.Count == 0)
                {
                    var all = ReadLines(await CallAsync(t => _cache.GetAsync(TenantsKey, t), cancellationToken).ConfigureAwait(false));
                    if (all.Remove(tenant)) await Call(t => WriteLines(TenantsKey, all, t), cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally { _indexLock.Release(); }
    }

    /// <summary>Releases the store's locks (not the cache, which the caller owns).</summary>
    public void Dispose()
    {
        foreach (var gate in _keyLocks) gate.Dispose();
        _indexLock.Dispose();
    }

    private Task<bool> Call(Func<CancellationToken, Task> operation, CancellationToken cancellationToken) =>
        CallAsync(async t => { await operation(t).ConfigureAwait(false); return true; }, cancellationToken);

    private SemaphoreSlim KeyLock(string hash) => _keyLocks[Convert.ToInt32(hash[..4], 16) % Stripes];

    private static string Line(string hash, string model, string document) => $"{hash} {model} {document}";

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
