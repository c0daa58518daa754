using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace KVLink.Core.Caching;

/// <summary>
/// A store on a Redis-protocol server (Redis, Valkey, Garnet...) shared by a fleet, through StackExchange.Redis.
/// Each entry is its <see cref="KvCacheFormat"/> bytes split into chunks under a per-write id, plus a manifest
/// naming that write; the manifest is swapped atomically (GETSET) after the chunks are written, so readers
/// see a whole entry or none, and the checksum catches anything else. Index sets per tenant, model and
/// document make invalidation possible without scanning the server. Server errors are logged and read as
/// misses (a read, <see cref="KvCacheStoreStatistics.Unavailable"/>) or skipped (a write,
/// <see cref="KvCacheStoreStatistics.FailedWrites"/>): a cache outage never fails a request. A removal or
/// invalidation that cannot reach the server throws <see cref="KvCacheStoreUnavailableException"/>.
/// Connect with <c>BacklogPolicy.FailFast</c> and short timeouts so an outage costs milliseconds, not the timeout.
/// </summary>
public sealed class RedisKvCacheStore : IKvCacheStore, IKvCacheStoreInvalidation
{
    private readonly IConnectionMultiplexer _connection;
    private readonly RedisKvCacheStoreOptions _options;
    private readonly ILogger _logger;
    private readonly StoreCounters _counters = new();
    private long _entries, _bytes;

    /// <summary>Creates a store over an open connection (which the caller keeps owning).</summary>
    public RedisKvCacheStore(IConnectionMultiplexer connection, RedisKvCacheStoreOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _connection = connection;
        _options = options ?? new RedisKvCacheStoreOptions();
        if (string.IsNullOrWhiteSpace(_options.KeyPrefix))
            throw new ArgumentException("RedisKvCacheStoreOptions.KeyPrefix must not be empty.", "options.KeyPrefix");
        if (_options.ChunkBytes < 1024)
            throw new ArgumentOutOfRangeException("options.ChunkBytes", _options.ChunkBytes, "RedisKvCacheStoreOptions.ChunkBytes must be at least 1024.");
        if (_options.TimeToLive is { } ttl && ttl <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException("options.TimeToLive", ttl, "RedisKvCacheStoreOptions.TimeToLive must be positive (or null for no expiry).");
        if (_options.Database < -1)
            throw new ArgumentOutOfRangeException("options.Database", _options.Database, "RedisKvCacheStoreOptions.Database must be -1 (the connection's default) or a database number >= 0.");
        if (!Enum.IsDefined(_options.Compression))
            throw new ArgumentOutOfRangeException("options.Compression", _options.Compression, "RedisKvCacheStoreOptions.Compression is not a known compression.");
        _logger = _options.Logger ?? NullLogger.Instance;
    }

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics => _counters.Snapshot(Interlocked.Read(ref _entries), Interlocked.Read(ref _bytes));

    private IDatabase Db => _connection.GetDatabase(_options.Database);
    private string Manifest(string hash) => $"{_options.KeyPrefix}:m:{hash}";
    private string Chunk(string hash, string write, int i) => $"{_options.KeyPrefix}:c:{hash}:{write}:{i.ToString(CultureInfo.InvariantCulture)}";
    private string Index(string kind, string hash) => $"{_options.KeyPrefix}:ix:{kind}:{hash}";
    private string AllIndex => $"{_options.KeyPrefix}:ix:all";

    /// <summary>Manifest text: "v1 write-id chunk-count byte-length tenant-hash model-hash document-hash".</summary>
    private sealed record ManifestInfo(string Write, int Chunks, long Length, string Tenant, string Model, string Document)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"v1 {Write} {Chunks} {Length} {Tenant} {Model} {Document}");

        public static ManifestInfo? Parse(RedisValue value)
        {
            if (value.IsNullOrEmpty) return null;
            var p = ((string)value!).Split(' ');
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
            var db = Db;
            var raw = await db.StringGetAsync(Manifest(key.Hash)).ConfigureAwait(false);
            if (raw.IsNull) { _counters.Miss(); return null; }
            var manifest = ManifestInfo.Parse(raw);
            if (manifest is null) { StoreGuards.Rejected(_logger, _counters, nameof(RedisKvCacheStore), key, "malformed manifest"); return null; }
            var keys = Enumerable.Range(0, manifest.Chunks).Select(i => (RedisKey)Chunk(key.Hash, manifest.Write, i)).ToArray();
            var chunks = await db.StringGetAsync(keys).ConfigureAwait(false);
            // A chunk gone means the entry was replaced, removed or expired while we read: a plain miss.
            if (chunks.Any(c => c.IsNull)) { _counters.Miss(); return null; }
            var joined = StoreGuards.Concatenate([.. chunks.Select(c => (byte[])c!)], manifest.Length);
            if (joined is null) { StoreGuards.Rejected(_logger, _counters, nameof(RedisKvCacheStore), key, "chunks do not add up to the manifest's length"); return null; }
            bytes = joined;
        }
        catch (Exception e) when (IsServerFailure(e))
        {
            _counters.Unavailable();
            _logger.LogWarning("KV cache store {Store}: read of {Key} failed, treated as a miss: {Reason}", nameof(RedisKvCacheStore), key, e.Message);
            return null;
        }

        return StoreGuards.Decode(bytes, key, _logger, _counters, nameof(RedisKvCacheStore));
    }

    /// <inheritdoc/>
    public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        StoreGuards.EnsureBelongs(entry, key);
        byte[] bytes = KvCacheFormat.Serialize(entry, _options.Compression);
        string write = Guid.NewGuid().ToString("N");
        int size = _options.ChunkBytes;
        int count = StoreGuards.ChunkCount(bytes.Length, size);
        // Chunks outlive their manifest a little, so a reader that got the manifest finds them.
        TimeSpan? chunkTtl = _options.TimeToLive is { } ttl ? ttl + TimeSpan.FromMinutes(1) : null;
        try
        {
            var db = Db;
            var writes = new List<Task>(count);
            for (int i = 0; i < count; i++)
            {
                var part = bytes.AsMemory(i * size, Math.Min(size, bytes.Length - i * size));
                writes.Add(chunkTtl is { } ct ? db.StringSetAsync(Chunk(key.Hash, write, i), part, ct) : db.StringSetAsync(Chunk(key.Hash, write, i), part));
            }
            await Task.WhenAll(writes).ConfigureAwait(false);
            var manifest = new ManifestInfo(write, count, bytes.Length, key.TenantHash, key.ModelHash, key.DocumentHash);
            var previous = ManifestInfo.Parse(await db.StringGetSetAsync(Manifest(key.Hash), manifest.ToString()).ConfigureAwait(false));
            if (_options.TimeToLive is { } t) await db.KeyExpireAsync(Manifest(key.Hash), t).ConfigureAwait(false);
            await Task.WhenAll(
                db.SetAddAsync(Index("t", key.TenantHash), key.Hash), db.SetAddAsync(Index("m", key.ModelHash), key.Hash),
                db.SetAddAsync(Index("d", key.DocumentHash), key.Hash), db.SetAddAsync(AllIndex, key.Hash)).ConfigureAwait(false);
            if (previous is not null && previous.Write != write) await DeleteChunks(db, key.Hash, previous).ConfigureAwait(false);
            else Interlocked.Increment(ref _entries);
            Interlocked.Add(ref _bytes, bytes.Length - (previous?.Length ?? 0));
            _counters.Write(bytes.Length);
        }
        catch (Exception e) when (IsServerFailure(e))
        {
            _counters.FailedWrite();
            _logger.LogWarning("KV cache store {Store}: write of {Key} failed and was skipped: {Reason}", nameof(RedisKvCacheStore), key, e.Message);
        }
    }

    /// <inheritdoc/>
    public async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        bool removed;
        try { removed = await RemoveHash(Db, key.Hash).ConfigureAwait(false); }
        catch (Exception e) when (IsServerFailure(e)) { throw Unreachable("remove " + key, e); }
        if (removed) _counters.Remove();
        return removed;
    }

    /// <inheritdoc/>
    public async ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        try { return await Db.KeyExistsAsync(Manifest(key.Hash)).ConfigureAwait(false); }
        catch (Exception e) when (IsServerFailure(e)) { return false; }
    }

    /// <inheritdoc/>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default) =>
        (await InvalidateKeysAsync(scope, cancellationToken).ConfigureAwait(false)).Count;

    /// <inheritdoc/>
    public async ValueTask<IReadOnlyCollection<string>> InvalidateKeysAsync(KvCacheScope scope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scope);
        try { return await InvalidateCore(scope, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (IsServerFailure(e)) { throw Unreachable("invalidate " + scope, e); }
    }

    private async Task<IReadOnlyCollection<string>> InvalidateCore(KvCacheScope scope, CancellationToken cancellationToken)
    {
        var db = Db;
        string set = scope.DocumentId is not null ? Index("d", KvCacheKey.HashOf("document", scope.DocumentId)[..16])
            : scope.Tenant is not null ? Index("t", KvCacheKey.HashOf("tenant", scope.Tenant)[..16])
            : scope.ModelFingerprint is not null ? Index("m", KvCacheKey.HashOf("model", scope.ModelFingerprint)[..16])
            : AllIndex;
        var removed = new List<string>();
        foreach (var member in await db.SetMembersAsync(set).ConfigureAwait(false))
        {
            cancellationToken.ThrowIfCancellationRequested();
            string hash = member!;
            var manifest = ManifestInfo.Parse(await db.StringGetAsync(Manifest(hash)).ConfigureAwait(false));
            if (manifest is null) { await db.SetRemoveAsync(set, hash).ConfigureAwait(false); continue; }
            if (scope.MatchesHashes(manifest.Tenant, manifest.Model, manifest.Document) && await RemoveHash(db, hash).ConfigureAwait(false)) removed.Add(hash);
        }
        _counters.Remove(removed.Count);
        return removed;
    }

    private async Task<bool> RemoveHash(IDatabase db, string hash)
    {
        var manifest = ManifestInfo.Parse(await db.StringGetDeleteAsync(Manifest(hash)).ConfigureAwait(false));
        if (manifest is null) return false;
        await DeleteChunks(db, hash, manifest).ConfigureAwait(false);
        await Task.WhenAll(
            db.SetRemoveAsync(Index("t", manifest.Tenant), hash), db.SetRemoveAsync(Index("m", manifest.Model), hash),
            db.SetRemoveAsync(Index("d", manifest.Document), hash), db.SetRemoveAsync(AllIndex, hash)).ConfigureAwait(false);
        Interlocked.Decrement(ref _entries);
        Interlocked.Add(ref _bytes, -manifest.Length);
        return true;
    }

    /// <summary>Errors that mean the server could not be used (down, timed out, connection closed), not a bug.</summary>
    private static bool IsServerFailure(Exception e) => e is RedisException or TimeoutException or ObjectDisposedException;

    private KvCacheStoreUnavailableException Unreachable(string what, Exception e)
    {
        _logger.LogWarning("KV cache store {Store}: could not {What}: {Reason}", nameof(RedisKvCacheStore), what, e.Message);
        return new KvCacheStoreUnavailableException($"{nameof(RedisKvCacheStore)}: could not {what}: the server is unavailable ({e.Message}).", e);
    }

    private Task DeleteChunks(IDatabase db, string hash, ManifestInfo manifest) =>
        db.KeyDeleteAsync(Enumerable.Range(0, manifest.Chunks).Select(i => (RedisKey)Chunk(hash, manifest.Write, i)).ToArray());
}
