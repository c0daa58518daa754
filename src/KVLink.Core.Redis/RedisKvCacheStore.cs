using KVLink.Core.Caching;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace KVLink.Core.Redis;

/// <summary>
/// A <see cref="ChunkedKvCacheStore"/> on a Redis-protocol server (Redis, Valkey, Garnet, Redis Cluster...) shared by a
/// fleet, through StackExchange.Redis. The manifest is swapped atomically (SET ... GET) after the chunks are written.
/// An entry's keys share one hash tag, so a cluster keeps them in one slot. Index sets per tenant, model and document
/// (on a cluster, one per slot, next to the entries they list) make invalidation possible without scanning the server
/// (docs/scale-out.md). An error reply of the server does not count towards the circuit (the server is up). Keys of
/// the wrong Redis type where the store expects its own are replaced on write and read as misses.
/// </summary>
public sealed class RedisKvCacheStore : ChunkedKvCacheStore
{
    /// <summary>Keys per MGET or DEL: far below any server's argument limit, and a missing chunk stops a read early.</summary>
    private const int Batch = 1024;
    private readonly IConnectionMultiplexer _connection;
    private readonly RedisKvCacheStoreOptions _options;

    /// <summary>Creates a store over an open connection (which the caller keeps owning).</summary>
    /// <exception cref="ArgumentException">A setting of <paramref name="options"/> out of range: the message names it.</exception>
    public RedisKvCacheStore(IConnectionMultiplexer connection, RedisKvCacheStoreOptions? options = null)
        : base(options ??= new RedisKvCacheStoreOptions(), Batch)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (options.KeyPrefix.AsSpan().IndexOfAny('{', '}') >= 0)
            throw new ArgumentException("RedisKvCacheStoreOptions.KeyPrefix must not contain braces (the store adds a hash tag per entry).", "options.KeyPrefix");
        if (options.Database < -1)
            throw new ArgumentOutOfRangeException("options.Database", options.Database, "RedisKvCacheStoreOptions.Database must be -1 (the connection's default) or a database number >= 0.");
        _connection = connection;
        _options = options;
    }

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
    /// <remarks>A key of another Redis type under the manifest's name is returned as empty text: a refused entry.</remarks>
    protected override async Task<string?> GetManifestAsync(string tenantHash, string hash, CancellationToken cancellationToken)
    {
        try { return await Db.StringGetAsync(Manifest(hash)).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e)) { return ""; }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// One command sets the manifest (with its TTL: SET ... EX ... GET) and returns the one it replaced, so a write the
    /// server accepted always carries its expiry. A key of another type under the manifest's name would refuse every
    /// write forever: it holds no entry of ours, so it is deleted and the swap made again.
    /// </remarks>
    protected override async Task<string?> SwapManifestAsync(KvCacheKey key, string manifest, TimeSpan? timeToLive, CancellationToken cancellationToken)
    {
        var db = Db;
        string m = Manifest(key.Hash);
        try { return await Swap(db, m, manifest, timeToLive).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e))
        {
            Logger.LogWarning("KV cache store {Store}: manifest key {Manifest} held another Redis type and was replaced", nameof(RedisKvCacheStore), m);
            await db.KeyDeleteAsync(m).ConfigureAwait(false);
            return await Swap(db, m, manifest, timeToLive).ConfigureAwait(false);
        }
    }

    private static async Task<string?> Swap(IDatabase db, string m, string manifest, TimeSpan? timeToLive) =>
        timeToLive is { } ttl ? await db.StringSetAndGetAsync(m, manifest, ttl).ConfigureAwait(false) : await db.StringGetSetAsync(m, manifest).ConfigureAwait(false);

    /// <inheritdoc/>
    protected override async Task<string?> DeleteManifestAsync(string tenantHash, string hash, CancellationToken cancellationToken)
    {
        var db = Db;
        string m = Manifest(hash);
        try { return await db.StringGetDeleteAsync(m).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e)) { await db.KeyDeleteAsync(m).ConfigureAwait(false); return ""; }
    }

    /// <inheritdoc/>
    /// <remarks>One MGET (an entry's keys share a slot).</remarks>
    protected override async Task<IReadOnlyList<byte[]?>> GetChunksAsync(string tenantHash, string hash, string write, int first, int count, CancellationToken cancellationToken)
    {
        var keys = new RedisKey[count];
        for (int i = 0; i < count; i++) keys[i] = Chunk(hash, write, first + i);
        var values = await Db.StringGetAsync(keys).ConfigureAwait(false);
        return [.. values.Select(v => v.IsNull ? null : (byte[]?)v)];
    }

    /// <inheritdoc/>
    protected override Task SetChunkAsync(string tenantHash, string hash, string write, int index, ReadOnlyMemory<byte> value, TimeSpan? timeToLive, CancellationToken cancellationToken) =>
        timeToLive is { } ttl ? Db.StringSetAsync(Chunk(hash, write, index), value, ttl) : Db.StringSetAsync(Chunk(hash, write, index), value);

    /// <summary>
    /// Deletes the chunks a batch at a time, and stops at the first batch of which none was there. Chunks are written
    /// before their manifest and outlive it, so a batch wholly gone means the rest was never written (a planted
    /// manifest: one DEL, whatever it claims) or went the same way (expired, or evicted by the server, which evicts
    /// what is left too). The work is bounded by the chunks that exist.
    /// </summary>
    protected override async Task DeleteChunksAsync(string tenantHash, string hash, string write, int count, CancellationToken cancellationToken)
    {
        var db = Db;
        for (int start = 0; start < count; start += Batch)
        {
            var keys = new RedisKey[Math.Min(Batch, count - start)];
            for (int i = 0; i < keys.Length; i++) keys[i] = Chunk(hash, write, start + i);
            if (await db.KeyDeleteAsync(keys).ConfigureAwait(false) == 0) break;
        }
    }

    /// <inheritdoc/>
    protected override Task IndexAsync(KvCacheKey key, CancellationToken cancellationToken)
    {
        var db = Db;
        int p = PartitionOf(key.Hash);
        return Task.WhenAll(
            AddToIndex(db, Index("t", key.TenantHash, p), key.Hash), AddToIndex(db, Index("m", key.ModelHash, p), key.Hash),
            AddToIndex(db, Index("d", key.DocumentHash, p), key.Hash), AddToIndex(db, AllIndexIn(p), key.Hash));
    }

    /// <inheritdoc/>
    protected override Task UnindexAsync(string hash, string tenantHash, string modelHash, string documentHash, CancellationToken cancellationToken)
    {
        var db = Db;
        int p = PartitionOf(hash);
        return Task.WhenAll(
            RemoveFromIndex(db, Index("t", tenantHash, p), hash), RemoveFromIndex(db, Index("m", modelHash, p), hash),
            RemoveFromIndex(db, Index("d", documentHash, p), hash), RemoveFromIndex(db, AllIndexIn(p), hash));
    }

    /// <summary>SADD; a key of another type under the index's name holds no member of ours, so it is replaced by a set.</summary>
    private async Task AddToIndex(IDatabase db, string set, string hash)
    {
        try { await db.SetAddAsync(set, hash).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e))
        {
            Logger.LogWarning("KV cache store {Store}: index key {Index} held another Redis type and was replaced", nameof(RedisKvCacheStore), set);
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
    /// <remarks>
    /// Reads the scope's set in every partition (one on a single server, one per slot on a cluster: pipelined, a
    /// batch per bounded call), then removes the members one bounded call each, so a long invalidation is not cut by
    /// the operation timeout. A member with no entry behind it is dropped from its set.
    /// </remarks>
    protected override async Task InvalidateEntriesAsync(KvCacheScope scope, ICollection<string> removed, CancellationToken cancellationToken)
    {
        Func<int, string> set = NarrowestPart(scope) is { } part ? p => Index(part.Part[..1], part.Hash, p) : AllIndexIn;
        var members = new List<(string Set, string Hash)>();
        var wrongTyped = new List<string>();
        int partitions = IsCluster ? HashSlots.Count : 1;
        for (int start = 0; start < partitions; start += Batch)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var sets = Enumerable.Range(start, Math.Min(Batch, partitions - start)).Select(set).ToArray();
            var found = await CallAsync(_ => Task.WhenAll(sets.Select(ReadIndex)), cancellationToken).ConfigureAwait(false);
            for (int i = 0; i < sets.Length; i++)
            {
                if (found[i] is null) wrongTyped.Add(sets[i]);
                else foreach (var member in found[i]!) members.Add((sets[i], member!));
            }
        }
        if (wrongTyped.Count > 0) throw await WrongTypedIndex(wrongTyped, cancellationToken).ConfigureAwait(false);

        foreach (var (indexSet, hash) in members)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (await CallAsync(t => RemoveMember(indexSet, hash, scope, t), cancellationToken).ConfigureAwait(false)) removed.Add(hash);
        }
    }

    private async Task<bool> RemoveMember(string set, string hash, KvCacheScope scope, CancellationToken cancellationToken)
    {
        // The tenant is not in this layout's keys: the manifest says it.
        bool? removed = await RemoveEntryAsync("", hash, scope, cancellationToken).ConfigureAwait(false);
        // No entry of ours behind this member (gone, or junk under its name, now deleted): drop the member too.
        if (removed is null) await RemoveFromIndex(Db, set, hash).ConfigureAwait(false);
        return removed == true;
    }

    /// <summary>SMEMBERS of one index set; null when the key holds another Redis type.</summary>
    private async Task<RedisValue[]?> ReadIndex(string set)
    {
        try { return await Db.SetMembersAsync(set).ConfigureAwait(false); }
        catch (RedisServerException e) when (IsWrongType(e)) { return null; }
    }

    /// <summary>Wrong-typed index keys are deleted (later writes rebuild them); the caller learns the invalidation may be incomplete.</summary>
    private async Task<Exception> WrongTypedIndex(List<string> sets, CancellationToken cancellationToken)
    {
        foreach (var set in sets) await CallAsync(_ => Db.KeyDeleteAsync(set), cancellationToken).ConfigureAwait(false);
        string message = $"{nameof(RedisKvCacheStore)}: the index key {sets[0]}{(sets.Count > 1 ? $" (and {sets.Count - 1} more)" : "")} held another Redis type, "
            + "not the store's set; it was deleted, so entries written before cannot be found by this invalidation (they expire with the TTL, or can be removed one by one).";
        Logger.LogWarning("KV cache store {Store}: {Message}", nameof(RedisKvCacheStore), message);
        return new KvCacheStoreUnavailableException(message);
    }

    /// <summary>An answer from the server (an error reply) shows it is up; anything else (connection, timeout, client) counts towards the circuit.</summary>
    protected override bool IsOutage(Exception exception) => exception is not RedisServerException;

    private static bool IsWrongType(RedisServerException e) => e.Message.StartsWith("WRONGTYPE", StringComparison.Ordinal);
}
