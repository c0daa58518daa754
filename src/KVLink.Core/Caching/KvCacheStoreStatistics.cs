namespace KVLink.Core.Caching;

/// <summary>A snapshot of one store's counters since it was created (entries and bytes are current values).</summary>
/// <param name="Hits">Reads that returned an entry.</param>
/// <param name="Misses">Reads that returned nothing, including <paramref name="Rejected"/> ones.</param>
/// <param name="Rejected">Reads that found an entry but refused it: corrupt, truncated, wrong checksum, format version, model or key.</param>
/// <param name="Writes">Entries stored.</param>
/// <param name="Evictions">Entries dropped to respect a budget (or refused because they alone exceed it).</param>
/// <param name="Removals">Entries removed or invalidated on request.</param>
/// <param name="Entries">Entries held now (as far as this process knows).</param>
/// <param name="Bytes">Bytes held now (serialized size, or tensor bytes in memory).</param>
/// <param name="BytesRead">Bytes of entries returned by reads.</param>
/// <param name="BytesWritten">Bytes of entries written.</param>
/// <param name="FailedWrites">Writes skipped because the store could not take them (server unreachable, disk error); the caller was not failed.</param>
/// <param name="Unavailable">Reads answered as a miss because the store could not be reached or read (counted in <paramref name="Misses"/> too).</param>
public readonly record struct KvCacheStoreStatistics(
    long Hits, long Misses, long Rejected, long Writes, long Evictions, long Removals,
    long Entries, long Bytes, long BytesRead, long BytesWritten, long FailedWrites = 0, long Unavailable = 0);

/// <summary>Thread-safe counters behind <see cref="KvCacheStoreStatistics"/>.</summary>
internal sealed class StoreCounters
{
    private long _hits, _misses, _rejected, _writes, _evictions, _removals, _bytesRead, _bytesWritten, _failedWrites, _unavailable;

    public void Hit(long bytes) { Interlocked.Increment(ref _hits); Interlocked.Add(ref _bytesRead, bytes); }
    public void Miss() => Interlocked.Increment(ref _misses);
    public void Reject() { Interlocked.Increment(ref _rejected); Interlocked.Increment(ref _misses); }
    public void Write(long bytes) { Interlocked.Increment(ref _writes); Interlocked.Add(ref _bytesWritten, bytes); }
    public void Evict(long count = 1) => Interlocked.Add(ref _evictions, count);
    public void Remove(long count = 1) => Interlocked.Add(ref _removals, count);
    public void FailedWrite() => Interlocked.Increment(ref _failedWrites);
    public void Unavailable() { Interlocked.Increment(ref _unavailable); Interlocked.Increment(ref _misses); }

    public KvCacheStoreStatistics Snapshot(long entries, long bytes) => new(
        Interlocked.Read(ref _hits), Interlocked.Read(ref _misses), Interlocked.Read(ref _rejected), Interlocked.Read(ref _writes),
        Interlocked.Read(ref _evictions), Interlocked.Read(ref _removals), entries, bytes, Interlocked.Read(ref _bytesRead), Interlocked.Read(ref _bytesWritten),
        Interlocked.Read(ref _failedWrites), Interlocked.Read(ref _unavailable));
}
