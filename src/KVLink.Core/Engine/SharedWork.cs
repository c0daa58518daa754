using System.Collections.Concurrent;

namespace KVLink.Core.Engine;

/// <summary>
/// Single-flight work shared by every caller that asks for the same key at the same time (a document's encode, a prompt
/// prefix's): the first caller starts it, the others wait for the same task. Each caller waits under its own cancellation;
/// when the last one still waiting gives up, the work is cancelled too (its token fires), as Microsoft.Extensions.Caching.Hybrid
/// does with shared work, and the next caller starts it afresh. A caller who gives up while others wait leaves the work running.
/// </summary>
internal sealed class SharedWork<TKey, T> where TKey : notnull
{
    private readonly ConcurrentDictionary<TKey, Flight> _flights = new();

    /// <summary>Keys whose work is running or waited for now.</summary>
    public int Count => _flights.Count;

    /// <summary>
    /// The result of <paramref name="work"/> for <paramref name="key"/>: joins the running flight of that key, or starts one.
    /// <paramref name="work"/> gets a token that fires once every caller of the flight has cancelled.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired (the work goes on while others wait).</exception>
    public async Task<T> RunAsync(TKey key, Func<CancellationToken, Task<T>> work, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var flight = _flights.GetOrAdd(key, _ => new Flight());
            if (!flight.TryJoin())
            {
                // Abandoned by its last caller a moment ago: it is leaving the table; start a new one.
                _flights.TryRemove(KeyValuePair.Create(key, flight));
                continue;
            }
            var task = flight.Start(() => RunFlightAsync(key, flight, work));
            try
            {
                return await task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                if (flight.Leave() && !task.IsCompleted)
                {
                    _flights.TryRemove(KeyValuePair.Create(key, flight));
                    flight.Cancel();
                }
            }
        }
    }

    private async Task<T> RunFlightAsync(TKey key, Flight flight, Func<CancellationToken, Task<T>> work)
    {
        try
        {
            return await work(flight.Token).ConfigureAwait(false);
        }
        finally
        {
            _flights.TryRemove(KeyValuePair.Create(key, flight));
        }
    }

    /// <summary>One running piece of work and the callers waiting for it.</summary>
    private sealed class Flight
    {
        private readonly Lock _gate = new();
        private readonly CancellationTokenSource _cancel = new();
        private int _waiters;
        private bool _abandoned;
        private Task<T>? _task;

        public CancellationToken Token => _cancel.Token;

        /// <summary>Adds a waiter, unless the last one already left (then the flight is being cancelled).</summary>
        public bool TryJoin()
        {
            lock (_gate)
            {
                if (_abandoned) return false;
                _waiters++;
                return true;
            }
        }

        /// <summary>The flight's task, started by its first waiter.</summary>
        public Task<T> Start(Func<Task<T>> run)
        {
            lock (_gate) return _task ??= Task.Run(run);
        }

        /// <summary>Removes a waiter; true when it was the last one (the flight is then abandoned).</summary>
        public bool Leave()
        {
            lock (_gate)
            {
                if (--_waiters > 0) return false;
                _abandoned = true;
                return true;
            }
        }

        public void Cancel() => _cancel.Cancel();
    }
}
