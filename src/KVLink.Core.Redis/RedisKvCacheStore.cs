using KVLink.Core.Caching;
using KVLink.Core.Caching.Format;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;

namespace KVLink.Core.Redis;

/// <summary>
/// A store on a Redis-protocol server (Redis, Valkey, Garnet, Redis Cluster...) shared by a fleet, through StackExchange.Redis.
/// Each entry is its <see cref="KvCacheFormat"/> bytes split into chunks under a per-write id, plus a manifest
/// naming that write; the manifest is swapped atomically (GETSET) after the chunks are written, so readers
/// see a whole entry or none, and the checksum catches anything else. An entry's keys share one hash tag, so a
/// cluster keeps them in one slot. Index sets per tenant, model and document (on a cluster, one per slot, next to
/// the entries they list) make invalidation possible without scanning the server (docs/scale-out.md). Server errors are logged and read as misses (a read, <see cref="KvCacheStoreStatistics.Unavailable"/>)
/// or skipped (a write, <see cref="KvCacheStoreStatistics.FailedWrites"/>): a cache outage never fails a request.
/// Each call is bounded by <see cref="RedisKvCacheStoreOptions.OperationTimeout"/>, and after
/// <see cref="RedisKvCacheStoreOptions.FailuresBeforeBreak"/> failures in a row the server is skipped for
/// <see cref="RedisKvCacheStoreOptions.BreakDuration"/>. A removal or invalidation that cannot reach the server
/// throws <see cref="KvCacheStoreUnavailableException"/>. Keys of the wrong Redis type where the store expects its
/// own are replaced on write and read as misses.
/// </summary>
public sealed class RedisKvCacheStore : IKvCacheStore, IKvCacheStoreInvalidation
{
    /// <summary>Keys per MGET or DEL: far below any server's argument limit, and a missing chunk stops a read early.</summary>
    private const int Batch = 1024;
    private readonly IConnectionMultiplexer _connection;
    private readonly RedisKvCacheStoreOptions _options;
    private readonly ILogger _logger;
    private readonly CircuitBreaker _circuit;
    private readonly StoreCounters _counters = new();
    private long _entries, _bytes;

    /// <summary>Creates a store over an open connection (which the caller keeps owning).</summary>
    public RedisKvCacheStore(IConnectionMultiplexer connection, RedisKvCacheStoreOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _connection = connection;
        _options = options ?? new RedisKvCacheStoreOptions();
        if (string.IsNullOrWhiteSpace(_options.KeyPrefix) || _options.KeyPrefix.AsSpan().IndexOfAny('{', '}') >= 0)
            throw new ArgumentException("RedisKvCacheStoreOptions.KeyPrefix must not be empty or contain braces (the store adds a hash tag per entry).", "options.KeyPrefix");
        if (_options.ChunkBytes < ChunkManifest.MinChunkBytes)
            throw new ArgumentOutOfRangeException("options.ChunkBytes", _options.ChunkBytes, "RedisKvCacheStoreOptions.ChunkBytes must be at least 1024.");
        if (_options.TimeToLive is { } ttl && ttl <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException("options.TimeToLive", ttl, "RedisKvCacheStoreOptions.TimeToLive must be positive (or null for no expiry).");
        if (_options.Database < -1)
            throw new ArgumentOutOfRangeException("options.Database", _options.Database, "RedisKvCacheStoreOptions.Database must be -1 (the connection's default) or a database number >= 0.");
        if (!Enum.IsDefined(_options.Quantization))
            throw new ArgumentOutOfRangeException("options.Quantization", _options.Quantization, "RedisKvCacheStoreOptions.Quantization is not a known quantization.");
        _circuit = CircuitBreaker.Create(nameof(RedisKvCacheStoreOptions), nameof(RedisKvCacheStore), _options.MaxEntryBytes,
            _options.OperationTimeout, _options.FailuresBeforeBreak, _options.BreakDuration, _options.TimeProvider);
        _logger = _options.Logger ?? NullLogger.Instance;
    }

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics => _counters.Snapshot(Interlocked.Read(ref _entries), Interlocked.Read(ref _bytes));

    private IDatabase Db => _connection.GetDatabase(_options.Database);

    // Layout version 3 (docs/cache-format.md): {key32} is a hash tag, so an entry's manifest and chunks share a cluster
    // slot (one MGET/DEL). Index sets are split by partition: on a cluster the partition is the entry's slot and the
    // set's hash tag is a tag of that same slot, so an entry and its index memberships live on one master, are
    // replicated in the order they were written and are lost together in a failover; on a single server there is one
    // partition (0). Invalidation reads the scope's set in every partition.
    internal string Manifest(string hash) => $"{_options.KeyPrefix}:v3:{{{hash}}}:m";
    internal string Chunk(string hash, string write, int i) => $"{_options.KeyPrefix}:v3:{{{hash}}}:c:{write}:{i}";
    internal string Index(string kind, string hash, int partition = 0) => $"{_options.KeyPrefix}:v3:ix:{kind}:{hash}:{{{HashSlots.TagOf(partition)}}}";
    internal string AllIndex => AllIndexIn(0);
    private string AllIndexIn(int partition) => $"{_options.KeyPrefix}:v3:ix:all:{{{HashSlots.TagOf(partition)}}}";

    /// <summary>Whether the connection talks to a Redis Cluster (then index sets are kept per slot).</summary>
    internal bool IsCluster => _connection.GetServers().Any(s => s.ServerType == ServerType.Cluster);

    /// <summary>The index partition of an entry: its hash slot on a cluster, 0 on a single server.</summary>
    private int PartitionOf(string hash) => IsCluster ? HashSlots.Of(hash) : 0;

    /// <inheritdoc/>
    public async ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ChunkRead read;
        try { read = await _circuit.RunAsync(_ => ReadChunks(key), IsOutage, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            // Any failure of the server or client (down, timed out, refused, circuit open) is a miss, never the caller's exception.
            _counters.Unavailable();
            _logger.LogWarning("KV cache store {Store}: read of {Key} failed, treated as a miss: {Reason}", nameof(RedisKvCacheStore), key, e.Message);
            return null;
        }
        return read.Finish(key, _logger, _counters, nameof(RedisKvCacheStore));
    }

    private async Task<ChunkRead> ReadChunks(KvCacheKey key)
    {
        var db = Db;
        RedisValue raw;
        try { raw = await db.StringGetAsync(Manifest(key.Hash)).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e)) { return ChunkRead.Rejected("the manifest key holds another Redis type"); }
        if (raw.IsNull) return ChunkRead.Miss;
        var manifest = ParseManifest(raw);
        if (manifest is null || manifest.Tenant != key.TenantHash) return ChunkRead.Rejected("malformed manifest");
        var chunks = new byte[manifest.Chunks][];
        for (int start = 0; start < manifest.Chunks; start += Batch)
        {
            int n = Math.Min(Batch, manifest.Chunks - start);
            var keys = new RedisKey[n];
            for (int i = 0; i < n; i++) keys[i] = Chunk(key.Hash, manifest.Write, start + i);
            var values = await db.StringGetAsync(keys).ConfigureAwait(false);
            for (int i = 0; i < n; i++)
            {
                // A chunk gone means the entry was replaced, removed or expired while we read: a plain miss.
                if (values[i].IsNull) return ChunkRead.Miss;
                chunks[start + i] = (byte[])values[i]!;
            }
        }
        return ChunkRead.Of(chunks, manifest);
    }

    /// <inheritdoc/>
    public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        StoreGuards.EnsureBelongs(entry, key);
        byte[] bytes = KvCacheFormat.Serialize(entry, _options.Quantization);
        if (bytes.Length > _options.MaxEntryBytes)
        {
            _counters.Evict();
            _logger.LogInformation("KV cache store {Store}: entry {Key} ({Bytes} bytes) exceeds MaxEntryBytes and was not written", nameof(RedisKvCacheStore), key, bytes.Length);
            return;
        }
        var manifest = ChunkManifest.For(key, bytes.Length, _options.ChunkBytes);
        ChunkManifest? previous;
        try { previous = await _circuit.RunAsync(_ => Write(key, bytes, manifest), IsOutage, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _counters.FailedWrite();
            _logger.LogWarning("KV cache store {Store}: write of {Key} failed and was skipped: {Reason}", nameof(RedisKvCacheStore), key, e.Message);
            return;
        }
        // The server accepted the manifest: the entry is written, whatever happens to the old chunks below.
        if (previous is null) Interlocked.Increment(ref _entries);
        Interlocked.Add(ref _bytes, bytes.Length - (previous?.Length ?? 0));
        _counters.Write(bytes.Length);
        if (previous is null || previous.Write == manifest.Write) return;
        try { await _circuit.RunAsync(_ => DeleteChunks(Db, key.Hash, previous), IsOutage, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning("KV cache store {Store}: chunks of the replaced entry {Key} were left behind: {Reason}", nameof(RedisKvCacheStore), key, e.Message);
        }
    }

    /// <summary>Chunks, then index memberships, then the manifest swap; returns the manifest it replaced.</summary>
    private async Task<ChunkManifest?> Write(KvCacheKey key, byte[] bytes, ChunkManifest manifest)
    {
        var db = Db;
        // Chunks outlive their manifest a little, so a reader that got the manifest finds them.
        TimeSpan? chunkTtl = _options.TimeToLive is { } ttl ? ttl + TimeSpan.FromMinutes(1) : null;
        var writes = new List<Task>(manifest.Chunks);
        for (int i = 0; i < manifest.Chunks; i++)
        {
            string chunk = Chunk(key.Hash, manifest.Write, i);
            var part = manifest.Slice(bytes, i);
            writes.Add(chunkTtl is { } ct ? db.StringSetAsync(chunk, part, ct) : db.StringSetAsync(chunk, part));
        }
        await Task.WhenAll(writes).ConfigureAwait(false);
        // Indexed before the manifest is visible, so no entry can be served that an invalidation would not find;
        // a member without a manifest is harmless (invalidation drops it).
        int p = PartitionOf(key.Hash);
        await Task.WhenAll(
            AddToIndex(db, Index("t", key.TenantHash, p), key.Hash), AddToIndex(db, Index("m", key.ModelHash, p), key.Hash),
            AddToIndex(db, Index("d", key.DocumentHash, p), key.Hash), AddToIndex(db, AllIndexIn(p), key.Hash)).ConfigureAwait(false);
        string m = Manifest(key.Hash);
        RedisValue old;
        try { old = await SwapManifest(db, m, manifest).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e))
        {
            // A key of another type under the manifest's name would refuse every write forever: it holds no entry of ours.
            _logger.LogWarning("KV cache store {Store}: manifest key {Manifest} held another Redis type and was replaced", nameof(RedisKvCacheStore), m);
            await db.KeyDeleteAsync(m).ConfigureAwait(false);
            old = await SwapManifest(db, m, manifest).ConfigureAwait(false);
        }
        var previous = ParseManifest(old);
        if (previous is null && !old.IsNull)
            _logger.LogWarning("KV cache store {Store}: replaced a manifest of {Key} that is not an entry of this store (malformed, or naming more chunks than MaxEntryBytes / ChunkBytes); nothing it names was read or deleted", nameof(RedisKvCacheStore), key);
        return previous;
    }

    /// <summary>A manifest from the server, bounded by this store's settings (<see cref="ChunkManifest.Parse"/>); null when it is not one of its entries.</summary>
    private ChunkManifest? ParseManifest(RedisValue raw) => ChunkManifest.Parse(raw, _options.MaxEntryBytes, _options.ChunkBytes);

    /// <summary>
    /// One command sets the manifest (with its TTL: SET ... EX ... GET) and returns the one it replaced, so a write the
    /// server accepted always carries its expiry and is counted only once that single reply arrived.
    /// </summary>
    private Task<RedisValue> SwapManifest(IDatabase db, string m, ChunkManifest manifest) =>
        _options.TimeToLive is { } ttl ? db.StringSetAndGetAsync(m, manifest.ToString(), ttl) : db.StringGetSetAsync(m, manifest.ToString());

    /// <summary>SADD; a key of another type under the index's name holds no member of ours, so it is replaced by a set.</summary>
    private async Task AddToIndex(IDatabase db, string set, string hash)
    {
        try { await db.SetAddAsync(set, hash).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e))
        {
            _logger.LogWarning("KV cache store {Store}: index key {Index} held another Redis type and was replaced", nameof(RedisKvCacheStore), set);
            await db.KeyDeleteAsync(set).ConfigureAwait(false);
            await db.SetAddAsync(set, hash).ConfigureAwait(false);
        }
    }

    private static async Task RemoveFromIndex(IDatabase db, string set, string hash)
    {
        try { await db.SetRemoveAsync(set, hash).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e)) { await db.KeyDeleteAsync(set).ConfigureAwait(false); }
    }

    /// <inheritdoc/>
    public async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        bool removed;
        try { removed = await _circuit.RunAsync(_ => RemoveHash(Db, key.Hash), IsOutage, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested) { throw Unreachable("remove " + key, e); }
        if (removed) _counters.Remove();
        return removed;
    }

    /// <inheritdoc/>
    public async ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        try { return await _circuit.RunAsync(_ => Db.KeyExistsAsync(Manifest(key.Hash)), IsOutage, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _logger.LogWarning("KV cache store {Store}: lookup of {Key} failed: {Reason}", nameof(RedisKvCacheStore), key, e.Message);
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
        Func<int, string> set = scope.DocumentId is not null ? p => Index("d", KvCacheKey.HashOf("document", scope.DocumentId)[..16], p)
            : scope.Tenant is not null ? p => Index("t", KvCacheKey.HashOf("tenant", scope.Tenant)[..16], p)
            : scope.ModelFingerprint is not null ? p => Index("m", KvCacheKey.HashOf("model", scope.ModelFingerprint)[..16], p)
            : AllIndexIn;

        // Every partition's set (one on a single server, one per slot on a cluster: pipelined, a batch per bounded call).
        var members = new List<(string Set, string Hash)>();
        var wrongTyped = new List<string>();
        int partitions;
        try
        {
            partitions = IsCluster ? HashSlots.Count : 1;
            for (int start = 0; start < partitions; start += Batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var sets = Enumerable.Range(start, Math.Min(Batch, partitions - start)).Select(set).ToArray();
                var found = await _circuit.RunAsync(_ => Task.WhenAll(sets.Select(ReadIndex)), IsOutage, cancellationToken).ConfigureAwait(false);
                for (int i = 0; i < sets.Length; i++)
                {
                    if (found[i] is null) wrongTyped.Add(sets[i]);
                    else foreach (var member in found[i]!) members.Add((sets[i], member!));
                }
            }
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested) { throw Unreachable("invalidate " + scope, e); }
        if (wrongTyped.Count > 0) throw await WrongTypedIndex(wrongTyped, cancellationToken).ConfigureAwait(false);

        // One bounded call per member, so a long invalidation is not cut by the operation timeout.
        var removed = new List<string>();
        try
        {
            foreach (var (indexSet, hash) in members)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (await _circuit.RunAsync(_ => RemoveMember(indexSet, hash, scope), IsOutage, cancellationToken).ConfigureAwait(false)) removed.Add(hash);
            }
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _counters.Remove(removed.Count);
            throw Unreachable($"invalidate {scope} (after removing {removed.Count})", e);
        }
        _counters.Remove(removed.Count);
        return removed;
    }

    /// <summary>SMEMBERS of one index set; null when the key holds another Redis type.</summary>
    private async Task<RedisValue[]?> ReadIndex(string set)
    {
        try { return await Db.SetMembersAsync(set).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e)) { return null; }
    }

    private async Task<bool> RemoveMember(string set, string hash, KvCacheScope scope)
    {
        var db = Db;
        ChunkManifest? manifest;
        try { manifest = ParseManifest(await db.StringGetAsync(Manifest(hash)).ConfigureAwait(false)); }
        catch (RedisServerException e) when (IsWrongType(e)) { manifest = null; }
        if (manifest is null)
        {
            // No entry of ours behind this member (gone, or junk under its name): drop the member and the junk.
            await RemoveHash(db, hash).ConfigureAwait(false);
            await RemoveFromIndex(db, set, hash).ConfigureAwait(false);
            return false;
        }
        return scope.MatchesHashes(manifest.Tenant, manifest.Model, manifest.Document) && await RemoveHash(db, hash).ConfigureAwait(false);
    }

    /// <summary>Wrong-typed index keys are deleted (later writes rebuild them); the caller learns the invalidation may be incomplete.</summary>
    private async Task<Exception> WrongTypedIndex(List<string> sets, CancellationToken cancellationToken)
    {
        foreach (var set in sets)
        {
            try { await _circuit.RunAsync(_ => Db.KeyDeleteAsync(set), IsOutage, cancellationToken).ConfigureAwait(false); }
            catch (Exception d) when (!cancellationToken.IsCancellationRequested) { return Unreachable("repair the index " + set, d); }
        }
        string message = $"{nameof(RedisKvCacheStore)}: the index key {sets[0]}{(sets.Count > 1 ? $" (and {sets.Count - 1} more)" : "")} held another Redis type, "
            + "not the store's set; it was deleted, so entries written before cannot be found by this invalidation (they expire with the TTL, or can be removed one by one).";
        _logger.LogWarning("KV cache store {Store}: {Message}", nameof(RedisKvCacheStore), message);
        return new KvCacheStoreUnavailableException(message);
    }

    /// <summary>Deletes the manifest (whatever its type), then the chunks and index memberships of a valid one; false when there was no valid entry.</summary>
    private async Task<bool> RemoveHash(IDatabase db, string hash)
    {
        string m = Manifest(hash);
        ChunkManifest? manifest;
        try { manifest = ParseManifest(await db.StringGetDeleteAsync(m).ConfigureAwait(false)); }
        catch (RedisServerException e) when (IsWrongType(e)) { await db.KeyDeleteAsync(m).ConfigureAwait(false); return false; }
        if (manifest is null) return false;
        await DeleteChunks(db, hash, manifest).ConfigureAwait(false);
        int p = PartitionOf(hash);
        await Task.WhenAll(
            RemoveFromIndex(db, Index("t", manifest.Tenant, p), hash), RemoveFromIndex(db, Index("m", manifest.Model, p), hash),
            RemoveFromIndex(db, Index("d", manifest.Document, p), hash), RemoveFromIndex(db, AllIndexIn(p), hash)).ConfigureAwait(false);
        Interlocked.Decrement(ref _entries);
        Interlocked.Add(ref _bytes, -manifest.Length);
        return true;
    }

    /// <summary>
    /// Deletes the chunks <paramref name="manifest"/> names, a batch at a time, and stops at the first batch of which
    /// none was there. Chunks are written before their manifest and outlive it, so a batch wholly gone means the
    /// rest was never written (a planted manifest: one DEL, whatever it claims) or went the same way (expired, or
    /// evicted by the server, which evicts what is left too). The work is bounded by the chunks that exist, and by
    /// <see cref="ChunkManifest.MaxChunks"/> since the manifest parsed.
    /// </summary>
    private async Task<bool> DeleteChunks(IDatabase db, string hash, ChunkManifest manifest)
    {
        for (int start = 0; start < manifest.Chunks; start += Batch)
        {
            var keys = new RedisKey[Math.Min(Batch, manifest.Chunks - start)];
            for (int i = 0; i < keys.Length; i++) keys[i] = Chunk(hash, manifest.Write, start + i);
            if (await db.KeyDeleteAsync(keys).ConfigureAwait(false) == 0) break;
        }
        return true;
    }

    /// <summary>An answer from the server (an error reply) shows it is up; anything else (connection, timeout, client) counts towards the circuit.</summary>
    private static bool IsOutage(Exception e) => e is not RedisServerException;

    private static bool IsWrongType(RedisServerException e) => e.Message.StartsWith("WRONGTYPE", StringComparison.Ordinal);

    private KvCacheStoreUnavailableException Unreachable(string what, Exception e)
    {
        if (e is KvCacheStoreUnavailableException skipped) return skipped;
        _logger.LogWarning("KV cache store {Store}: could not {What}: {Reason}", nameof(RedisKvCacheStore), what, e.Message);
        string why = e is RedisServerException ? "the server refused it" : "the server is unavailable";
        return new KvCacheStoreUnavailableException($"{nameof(RedisKvCacheStore)}: could not {what}: {why} ({e.Message}).", e);
    }
}
