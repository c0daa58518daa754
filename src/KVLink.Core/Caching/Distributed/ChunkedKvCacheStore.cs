using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KVLink.Core.Caching;

/// <summary>
/// A store on a key-value server shared by a fleet, written once for every such server. Each entry is its serialized
/// bytes (docs/cache-format.md) split into chunks under a per-write id, plus a manifest naming that write: the
/// chunks are written first, then the entry is indexed, then the manifest is swapped in, so readers see a whole entry
/// or a miss, and the checksum catches anything else. This base does the format, the chunking, the manifest checks,
/// the counters, the operation timeout and the circuit breaker; a derived store supplies the server operations (the
/// protected abstract members: values under its own key layout, and an index for invalidation).
/// Server errors are logged and read as misses (a read, <see cref="KvCacheStoreStatistics.Unavailable"/>) or skipped
/// (a write, <see cref="KvCacheStoreStatistics.FailedWrites"/>): a cache outage never fails a request. Each call is
/// bounded by <see cref="ChunkedKvCacheStoreOptions.OperationTimeout"/>, and after
/// <see cref="ChunkedKvCacheStoreOptions.FailuresBeforeBreak"/> failures in a row the server is skipped for
/// <see cref="ChunkedKvCacheStoreOptions.BreakDuration"/>. A removal or invalidation that cannot reach the server
/// throws <see cref="KvCacheStoreUnavailableException"/>.
/// </summary>
/// <remarks>
/// An entry is named by its tenant's hash and its key's hash (<see cref="KvCacheKey.TenantHash"/>, <see cref="KvCacheKey.Hash"/>);
/// a store whose keys do not hold the tenant ignores the first. Everything read from the server is untrusted: a
/// manifest is checked against this store's settings before any chunk is named, so a planted one cannot make the
/// store read or delete more keys than its own largest entry has.
/// </remarks>
public abstract class ChunkedKvCacheStore : IKvCacheStore, IKvCacheStoreInvalidation
{
    private readonly ChunkedKvCacheStoreOptions _options;
    private readonly int _chunksPerRead;
    private readonly CircuitBreaker _circuit;
    private readonly StoreCounters _counters = new();
    private long _entries, _bytes;

    /// <summary>Checks <paramref name="options"/> (named by their type in errors) and sets the store up.</summary>
    /// <param name="options">The settings; the store reads them on each call.</param>
    /// <param name="chunksPerRead">Chunks asked for in one <see cref="GetChunksAsync"/>: a missing one ends a read after its batch.</param>
    /// <exception cref="ArgumentException">A setting out of range: the message names it.</exception>
    protected ChunkedKvCacheStore(ChunkedKvCacheStoreOptions options, int chunksPerRead)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunksPerRead, 1);
        string name = options.GetType().Name;
        if (string.IsNullOrWhiteSpace(options.KeyPrefix))
            throw new ArgumentException($"{name}.KeyPrefix must not be empty.", "options.KeyPrefix");
        if (options.ChunkBytes < ChunkManifest.MinChunkBytes)
            throw new ArgumentOutOfRangeException("options.ChunkBytes", options.ChunkBytes, $"{name}.ChunkBytes must be at least {ChunkManifest.MinChunkBytes}.");
        if (options.TimeToLive is { } ttl && ttl <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException("options.TimeToLive", ttl, $"{name}.TimeToLive must be positive (or null for no expiry).");
        if (!Enum.IsDefined(options.Quantization))
            throw new ArgumentOutOfRangeException("options.Quantization", options.Quantization, $"{name}.Quantization is not a known quantization.");
        _circuit = CircuitBreaker.Create(name, GetType().Name, options.MaxEntryBytes, options.OperationTimeout, options.FailuresBeforeBreak, options.BreakDuration, options.TimeProvider);
        _options = options;
        _chunksPerRead = chunksPerRead;
        Logger = options.Logger ?? NullLogger.Instance;
    }

    /// <summary>Where refusals and server errors are logged (<see cref="ChunkedKvCacheStoreOptions.Logger"/>, or nowhere).</summary>
    protected ILogger Logger { get; }

    private string Name => GetType().Name;

    /// <inheritdoc/>
    public KvCacheStoreStatistics Statistics => _counters.Snapshot(Interlocked.Read(ref _entries), Interlocked.Read(ref _bytes));

    /// <summary>The manifest text under an entry's name; null when none is there. A value the store cannot read as text is returned as any text that is not a manifest (it is then refused).</summary>
    protected abstract Task<string?> GetManifestAsync(string tenantHash, string hash, CancellationToken cancellationToken);

    /// <summary>Sets <paramref name="key"/>'s manifest (expiring after <paramref name="timeToLive"/> when not null) and returns the value it replaced, in one step where the server can.</summary>
    protected abstract Task<string?> SwapManifestAsync(KvCacheKey key, string manifest, TimeSpan? timeToLive, CancellationToken cancellationToken);

    /// <summary>Deletes whatever is under an entry's manifest name and returns it as text (null when nothing was there).</summary>
    protected abstract Task<string?> DeleteManifestAsync(string tenantHash, string hash, CancellationToken cancellationToken);

    /// <summary>Chunks <paramref name="first"/> .. <paramref name="first"/> + <paramref name="count"/> - 1 of write <paramref name="write"/>, null where one is not there; exactly <paramref name="count"/> of them.</summary>
    protected abstract Task<IReadOnlyList<byte[]?>> GetChunksAsync(string tenantHash, string hash, string write, int first, int count, CancellationToken cancellationToken);

    /// <summary>Writes chunk <paramref name="index"/> of write <paramref name="write"/> (expiring after <paramref name="timeToLive"/> when not null: a minute after the manifest).</summary>
    protected abstract Task SetChunkAsync(string tenantHash, string hash, string write, int index, ReadOnlyMemory<byte> value, TimeSpan? timeToLive, CancellationToken cancellationToken);

    /// <summary>
    /// Deletes the <paramref name="count"/> chunks of write <paramref name="write"/>. The count comes from a manifest this
    /// store accepted, but the chunks may never have been written (a planted manifest): stop early once they are seen to be gone.
    /// </summary>
    protected abstract Task DeleteChunksAsync(string tenantHash, string hash, string write, int count, CancellationToken cancellationToken);

    /// <summary>Files <paramref name="key"/> in the indexes invalidation reads; called after its chunks are written and before its manifest is visible.</summary>
    protected abstract Task IndexAsync(KvCacheKey key, CancellationToken cancellationToken);

    /// <summary>Takes entry <paramref name="hash"/> (of the part hashes given) out of the indexes once <see cref="RemoveEntryAsync"/> removed it.</summary>
    protected abstract Task UnindexAsync(string hash, string tenantHash, string modelHash, string documentHash, CancellationToken cancellationToken);

    /// <summary>
    /// Finds the entries of <paramref name="scope"/> in the indexes and removes them with <see cref="RemoveEntryAsync"/>,
    /// each server call through <see cref="CallAsync"/>, adding the hash of each entry removed to <paramref name="removed"/>.
    /// </summary>
    protected abstract Task InvalidateEntriesAsync(KvCacheScope scope, ICollection<string> removed, CancellationToken cancellationToken);

    /// <summary>Whether a failure says the server is unreachable (counted towards the circuit) rather than that it refused one command. Default: every failure.</summary>
    protected virtual bool IsOutage(Exception exception) => true;

    /// <summary>Runs one server call, bounded by the operation timeout and skipped while the circuit is open.</summary>
    /// <exception cref="KvCacheStoreUnavailableException">The circuit is open: the call was not made.</exception>
    /// <exception cref="TimeoutException">The call took longer than <see cref="ChunkedKvCacheStoreOptions.OperationTimeout"/>.</exception>
    protected Task<T> CallAsync<T>(Func<CancellationToken, Task<T>> operation, CancellationToken cancellationToken) =>
        _circuit.RunAsync(operation, IsOutage, cancellationToken);

    /// <summary>
    /// The part of <paramref name="scope"/> whose index an invalidation reads: its document, else its tenant, else its
    /// model ("document", "tenant" or "model", and that part's hash as in <see cref="KvCacheKey.DocumentHash"/>); null for every entry.
    /// </summary>
    protected static (string Part, string Hash)? NarrowestPart(KvCacheScope scope)
    {
        ArgumentNullException.ThrowIfNull(scope);
        return scope.DocumentId is not null ? ("document", KvCacheKey.HashOf("document", scope.DocumentId)[..16])
            : scope.Tenant is not null ? ("tenant", KvCacheKey.HashOf("tenant", scope.Tenant)[..16])
            : scope.ModelFingerprint is not null ? ("model", KvCacheKey.HashOf("model", scope.ModelFingerprint)[..16])
            : null;
    }

    /// <inheritdoc/>
    public async ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        ChunkRead read;
        try { read = await CallAsync(t => ReadAsync(key, t), cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            // Any failure of the server or client (down, timed out, refused, circuit open) is a miss, never the caller's exception.
            _counters.Unavailable();
            Logger.LogWarning("KV cache store {Store}: read of {Key} failed, treated as a miss: {Reason}", Name, key, e.Message);
            return null;
        }
        return read.Finish(key, Logger, _counters, Name);
    }

    private async Task<ChunkRead> ReadAsync(KvCacheKey key, CancellationToken cancellationToken)
    {
        string? text = await GetManifestAsync(key.TenantHash, key.Hash, cancellationToken).ConfigureAwait(false);
        if (text is null) return ChunkRead.Miss;
        var manifest = Parse(text);
        if (manifest is null || manifest.Tenant != key.TenantHash) return ChunkRead.Rejected("malformed manifest");
        var chunks = new byte[manifest.Chunks][];
        for (int start = 0; start < manifest.Chunks; start += _chunksPerRead)
        {
            int n = Math.Min(_chunksPerRead, manifest.Chunks - start);
            var values = await GetChunksAsync(key.TenantHash, key.Hash, manifest.Write, start, n, cancellationToken).ConfigureAwait(false);
            if (values.Count != n) throw new InvalidOperationException($"{Name}.GetChunksAsync returned {values.Count} chunks for {n} asked.");
            for (int i = 0; i < n; i++)
            {
                // A chunk gone means the entry was replaced, removed or expired while we read: a plain miss.
                if (values[i] is not { } chunk) return ChunkRead.Miss;
                chunks[start + i] = chunk;
            }
        }
        return ChunkRead.Of(chunks, manifest);
    }

    /// <summary>A manifest from the server, bounded by this store's settings (<see cref="ChunkManifest.Parse"/>); null when it is not one of its entries.</summary>
    private ChunkManifest? Parse(string? text) => ChunkManifest.Parse(text, _options.MaxEntryBytes, _options.ChunkBytes);

    /// <inheritdoc/>
    public async ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken cancellationToken = default)
    {
        StoreGuards.EnsureBelongs(entry, key);
        byte[] bytes = KvCacheFormat.Serialize(entry, _options.Quantization);
        if (bytes.Length > _options.MaxEntryBytes)
        {
            _counters.Evict();
            Logger.LogInformation("KV cache store {Store}: entry {Key} ({Bytes} bytes) exceeds MaxEntryBytes and was not written", Name, key, bytes.Length);
            return;
        }
        var manifest = ChunkManifest.For(key, bytes.Length, _options.ChunkBytes);
        ChunkManifest? previous;
        try { previous = await CallAsync(t => WriteAsync(key, bytes, manifest, t), cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _counters.FailedWrite();
            Logger.LogWarning("KV cache store {Store}: write of {Key} failed and was skipped: {Reason}", Name, key, e.Message);
            return;
        }
        // The server accepted the manifest: the entry is written, whatever happens to the old chunks below.
        if (previous is null) Interlocked.Increment(ref _entries);
        Interlocked.Add(ref _bytes, bytes.Length - (previous?.Length ?? 0));
        _counters.Write(bytes.Length);
        if (previous is null || previous.Write == manifest.Write) return;
        try { await CallAsync(async t => { await DeleteChunksAsync(previous.Tenant, key.Hash, previous.Write, previous.Chunks, t).ConfigureAwait(false); return true; }, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            Logger.LogWarning("KV cache store {Store}: chunks of the replaced entry {Key} were left behind: {Reason}", Name, key, e.Message);
        }
    }

    /// <summary>Chunks, then index, then the manifest swap; returns the manifest it replaced.</summary>
    private async Task<ChunkManifest?> WriteAsync(KvCacheKey key, byte[] bytes, ChunkManifest manifest, CancellationToken cancellationToken)
    {
        TimeSpan? ttl = _options.TimeToLive;
        // Chunks outlive their manifest a little, so a reader that got the manifest finds them.
        TimeSpan? chunkTtl = ttl + TimeSpan.FromMinutes(1);
        await Task.WhenAll(Enumerable.Range(0, manifest.Chunks).Select(i =>
            SetChunkAsync(key.TenantHash, key.Hash, manifest.Write, i, manifest.Slice(bytes, i), chunkTtl, cancellationToken))).ConfigureAwait(false);
        // Indexed before the manifest is visible, so no entry can be served that an invalidation would not find;
        // an index member without a manifest is harmless (invalidation drops it).
        await IndexAsync(key, cancellationToken).ConfigureAwait(false);
        string? old = await SwapManifestAsync(key, manifest.ToString(), ttl, cancellationToken).ConfigureAwait(false);
        var previous = Parse(old);
        if (previous is null && old is not null)
            Logger.LogWarning("KV cache store {Store}: replaced a manifest of {Key} that is not an entry of this store (malformed, or naming more chunks than MaxEntryBytes / ChunkBytes); nothing it names was read or deleted", Name, key);
        return previous;
    }

    /// <inheritdoc/>
    public virtual async ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        bool? removed;
        try { removed = await CallAsync(t => RemoveEntryAsync(key.TenantHash, key.Hash, null, t), cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested) { throw Unavailable("remove " + key, e); }
        if (removed != true) return false;
        _counters.Remove();
        return true;
    }

    /// <summary>
    /// Removes one entry: deletes its manifest (whatever is under the name), then the chunks and index memberships of a
    /// valid one. With a <paramref name="scope"/> the manifest is read first and an entry outside the scope is kept.
    /// Not bounded by itself: call it inside <see cref="CallAsync"/>.
    /// </summary>
    /// <returns>True when the entry was removed; false when an entry outside <paramref name="scope"/> is there; null when no entry of this store was (what was under the name is gone).</returns>
    protected async Task<bool?> RemoveEntryAsync(string tenantHash, string hash, KvCacheScope? scope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(tenantHash);
        ArgumentNullException.ThrowIfNull(hash);
        if (scope is not null)
        {
            var found = Parse(await GetManifestAsync(tenantHash, hash, cancellationToken).ConfigureAwait(false));
            if (found is null) { await DeleteManifestAsync(tenantHash, hash, cancellationToken).ConfigureAwait(false); return null; }
            if (!scope.MatchesHashes(found.Tenant, found.Model, found.Document)) return false;
        }
        var manifest = Parse(await DeleteManifestAsync(tenantHash, hash, cancellationToken).ConfigureAwait(false));
        if (manifest is null) return null;
        await DeleteChunksAsync(manifest.Tenant, hash, manifest.Write, manifest.Chunks, cancellationToken).ConfigureAwait(false);
        await UnindexAsync(hash, manifest.Tenant, manifest.Model, manifest.Document, cancellationToken).ConfigureAwait(false);
        Interlocked.Decrement(ref _entries);
        Interlocked.Add(ref _bytes, -manifest.Length);
        return true;
    }

    /// <inheritdoc/>
    public async ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        try { return await CallAsync(async t => await GetManifestAsync(key.TenantHash, key.Hash, t).ConfigureAwait(false) is not null, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            Logger.LogWarning("KV cache store {Store}: lookup of {Key} failed: {Reason}", Name, key, e.Message);
            return false;
        }
    }

    /// <inheritdoc/>
    public async ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken cancellationToken = default) =>
        (await InvalidateKeysAsync(scope, cancellationToken).ConfigureAwait(false)).Count;

    ValueTask<IReadOnlyCollection<string>> IKvCacheStoreInvalidation.InvalidateKeysAsync(KvCacheScope scope, CancellationToken cancellationToken) =>
        InvalidateKeysAsync(scope, cancellationToken);

    private async ValueTask<IReadOnlyCollection<string>> InvalidateKeysAsync(KvCacheScope scope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(scope);
        var removed = new List<string>();
        try { await InvalidateEntriesAsync(scope, removed, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            _counters.Remove(removed.Count);
            throw Unavailable(removed.Count == 0 ? "invalidate " + scope : $"invalidate {scope} (after removing {removed.Count})", e);
        }
        _counters.Remove(removed.Count);
        return removed;
    }

    private KvCacheStoreUnavailableException Unavailable(string what, Exception e)
    {
        if (e is KvCacheStoreUnavailableException skipped) return skipped;
        Logger.LogWarning("KV cache store {Store}: could not {What}: {Reason}", Name, what, e.Message);
        string why = IsOutage(e) ? "the server is unavailable" : "the server refused it";
        return new KvCacheStoreUnavailableException($"{Name}: could not {what}: {why} ({e.Message}).", e);
    }
}
