namespace KVLink.Core.Caching;

/// <summary>
/// Bounds what a remote store's outage costs a request. Each store call runs under <see cref="RunAsync{T}"/>:
/// it may take at most the operation timeout, and after <c>failuresToOpen</c> consecutive outage failures the
/// circuit opens and calls fail at once (no network, no wait) for <c>breakDuration</c>; then one call is let
/// through as a probe, and its outcome closes the circuit again or reopens it. Without this a client that queues
/// commands while disconnected makes every read and write of every request wait for its own timeout.
/// </summary>
internal sealed class CircuitBreaker(int failuresToOpen, TimeSpan breakDuration, TimeSpan operationTimeout, TimeProvider time, string store)
{
    private readonly Lock _lock = new();
    private int _failures;
    private DateTimeOffset _openUntil;
    private bool _probing;

    /// <summary>Checks the options every remote store shares (named <paramref name="options"/>.X in errors) and creates its breaker.</summary>
    public static CircuitBreaker Create(string options, string store, long maxEntryBytes, TimeSpan operationTimeout, int failuresBeforeBreak, TimeSpan breakDuration, TimeProvider? time)
    {
        if (maxEntryBytes < ChunkManifest.MinChunkBytes || maxEntryBytes > Array.MaxLength)
            throw new ArgumentOutOfRangeException($"{options}.MaxEntryBytes", maxEntryBytes, $"{options}.MaxEntryBytes must be between {ChunkManifest.MinChunkBytes} and {Array.MaxLength}.");
        if (operationTimeout <= TimeSpan.Zero && operationTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException($"{options}.OperationTimeout", operationTimeout, $"{options}.OperationTimeout must be positive (or Timeout.InfiniteTimeSpan).");
        if (failuresBeforeBreak < 0)
            throw new ArgumentOutOfRangeException($"{options}.FailuresBeforeBreak", failuresBeforeBreak, $"{options}.FailuresBeforeBreak must be >= 0 (0 never breaks).");
        if (breakDuration < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException($"{options}.BreakDuration", breakDuration, $"{options}.BreakDuration must be >= 0.");
        return new CircuitBreaker(failuresBeforeBreak, breakDuration, operationTimeout, time ?? TimeProvider.System, store);
    }

    /// <summary>True while calls are being skipped (open, or half-open with a probe in flight).</summary>
    public bool IsOpen
    {
        get { lock (_lock) return failuresToOpen > 0 && _failures >= failuresToOpen && (time.GetUtcNow() < _openUntil || _probing); }
    }

    /// <summary>
    /// Runs <paramref name="operation"/> with a token that fires at the operation timeout (or with <paramref name="cancellationToken"/>),
    /// and stops waiting for it then even if it ignores the token.
    /// </summary>
    /// <exception cref="KvCacheStoreUnavailableException">The circuit is open: the call was not made.</exception>
    /// <exception cref="TimeoutException">The operation took longer than the operation timeout.</exception>
    public async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> operation, Func<Exception, bool> isOutage, CancellationToken cancellationToken)
    {
        if (!TryEnter())
            throw new KvCacheStoreUnavailableException($"{store}: skipped, the store failed {failuresToOpen} times in a row and is not retried before {_openUntil:O}.");
        using var timeout = new CancellationTokenSource(operationTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        bool outage = false;
        try
        {
            return await operation(linked.Token).WaitAsync(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            outage = true;
            throw new TimeoutException($"{store}: no answer within {operationTimeout.TotalMilliseconds:0} ms.");
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && isOutage(e))
        {
            outage = true;
            throw;
        }
        finally
        {
            if (cancellationToken.IsCancellationRequested && !outage) Release();
            else Record(outage);
        }
    }

    private bool TryEnter()
    {
        lock (_lock)
        {
            if (failuresToOpen <= 0 || _failures < failuresToOpen) return true;
            if (_probing || time.GetUtcNow() < _openUntil) return false;
            _probing = true; // half-open: this call is the probe; the others keep skipping until it ends
            return true;
        }
    }

    /// <summary>A cancelled call says nothing about the store: a probe slot is freed, nothing counted.</summary>
    private void Release()
    {
        lock (_lock) _probing = false;
    }

    private void Record(bool outage)
    {
        lock (_lock)
        {
            _probing = false;
            if (!outage) { _failures = 0; return; }
            _failures++;
            if (failuresToOpen > 0 && _failures >= failuresToOpen) _openUntil = time.GetUtcNow() + breakDuration;
        }
    }
}
