namespace KVLink.Core.Engine;

/// <summary>
/// The dedicated thread that runs every TorchSharp step of an engine. TorchSharp's dispose scopes and grad mode are
/// thread-local and LibTorch already uses all cores inside one operation, so one thread is both correct and fast;
/// callers just await. It runs two kinds of work: one-off items (<see cref="Run{T}"/>: compression, small jobs) in
/// arrival order, and the <see cref="BatchScheduler"/>'s steps, which batch every running request and document encode
/// into one forward each; the two alternate, so neither starves the other.
/// </summary>
internal sealed class ModelWorker : IDisposable
{
    private readonly object _gate = new();
    private readonly Queue<Action> _items = new();
    private readonly Thread _thread;
    private int _pending;
    private long _started;
    private bool _stopping;
    private const int Queued = 0, Running = 1, Cancelled = 2;

    public ModelWorker(string name, Func<Action, BatchScheduler> scheduler)
    {
        Scheduler = scheduler(Wake);
        _thread = new Thread(Loop) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>The continuous-batching scheduler whose steps this thread runs.</summary>
    public BatchScheduler Scheduler { get; }

    /// <summary>Work waiting or running: one-off items and scheduled sequences.</summary>
    public int Pending => Volatile.Read(ref _pending) + Scheduler.Outstanding;

    /// <summary>Work that has started running (never that cancelled while queued): one-off items and sequences.</summary>
    public long Started => Interlocked.Read(ref _started) + Scheduler.Started;

    /// <summary>
    /// Queues <paramref name="work"/>. If <paramref name="cancellationToken"/> fires while it waits, it never
    /// starts and the task is cancelled at once; once started, the work itself observes the token and the task
    /// completes only when the work has returned, so a caller never sees completion while tensors are in use.
    /// </summary>
    public Task<T> Run<T>(Func<T> work, CancellationToken cancellationToken)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (cancellationToken.IsCancellationRequested) { tcs.SetCanceled(cancellationToken); return tcs.Task; }
        int state = Queued;
        var registration = cancellationToken.Register(() =>
        {
            if (Interlocked.CompareExchange(ref state, Cancelled, Queued) == Queued) tcs.TrySetCanceled(cancellationToken);
        });
        void Item()
        {
            bool ran = false;
            T result = default!;
            Exception? error = null;
            try
            {
                if (Interlocked.CompareExchange(ref state, Running, Queued) != Queued) return; // cancelled while queued
                Interlocked.Increment(ref _started);
                ran = true;
                result = work();
            }
            catch (Exception e) { error = e; }
            finally
            {
                registration.Dispose();
                Interlocked.Decrement(ref _pending);
                // Published once the count is down: a caller who resumes on it finds the worker without it.
                if (ran)
                {
                    if (error is OperationCanceledException oce) tcs.TrySetCanceled(oce.CancellationToken);
                    else if (error is not null) tcs.TrySetException(error);
                    else tcs.TrySetResult(result);
                }
            }
        }
        lock (_gate)
        {
            if (_stopping)
            {
                registration.Dispose();
                throw new ObjectDisposedException(nameof(ModelWorker), "The engine has been disposed.");
            }
            Interlocked.Increment(ref _pending);
            _items.Enqueue(Item);
            Monitor.PulseAll(_gate);
        }
        return tcs.Task;
    }

    /// <summary>Wakes the thread: the scheduler has new work.</summary>
    private void Wake()
    {
        lock (_gate) Monitor.PulseAll(_gate);
    }

    private void Loop()
    {
        using var noGrad = TorchSharp.torch.no_grad();
        while (true)
        {
            Action? item = null;
            lock (_gate)
            {
                while (_items.Count == 0 && !Scheduler.HasWork && !_stopping) Monitor.Wait(_gate);
                if (_items.Count > 0) item = _items.Dequeue();
                else if (!Scheduler.HasWork) return; // stopping, and everything drained
            }
            item?.Invoke();
            try { Scheduler.Step(); }
            catch (Exception e) { Scheduler.FailAll(e); } // a step's own failures are handled inside; this is a last resort
        }
    }

    /// <summary>Lets queued work finish (requests and encodes included), then stops the thread.</summary>
    public void Dispose()
    {
        Scheduler.Close();
        lock (_gate)
        {
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        if (Thread.CurrentThread != _thread) _thread.Join();
    }
}
