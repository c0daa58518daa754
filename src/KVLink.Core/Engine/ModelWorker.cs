using System.Collections.Concurrent;

namespace KVLink.Core.Engine;

/// <summary>
/// A dedicated thread that runs every TorchSharp step of an engine, one at a time, in arrival order.
/// TorchSharp's dispose scopes and grad mode are thread-local and LibTorch already uses all cores
/// inside one operation, so a single worker is both correct and fast; callers just await.
/// </summary>
internal sealed class ModelWorker : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread _thread;
    private int _pending;
    private long _started;
    private const int Queued = 0, Running = 1, Cancelled = 2;

    public ModelWorker(string name)
    {
        _thread = new Thread(Loop) { IsBackground = true, Name = name };
        _thread.Start();
    }

    /// <summary>Requests waiting or running.</summary>
    public int Pending => Volatile.Read(ref _pending);

    /// <summary>Work items that have started running (never those cancelled while queued).</summary>
    public long Started => Interlocked.Read(ref _started);

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
        Interlocked.Increment(ref _pending);
        try
        {
            _queue.Add(() =>
            {
                try
                {
                    if (Interlocked.CompareExchange(ref state, Running, Queued) != Queued) return; // cancelled while queued
                    Interlocked.Increment(ref _started);
                    using var _ = TorchSharp.torch.no_grad();
                    tcs.TrySetResult(work());
                }
                catch (OperationCanceledException e) { tcs.TrySetCanceled(e.CancellationToken); }
                catch (Exception e) { tcs.TrySetException(e); }
                finally
                {
                    registration.Dispose();
                    Interlocked.Decrement(ref _pending);
                }
            });
        }
        catch (InvalidOperationException)
        {
            Interlocked.Decrement(ref _pending);
            registration.Dispose();
            throw new ObjectDisposedException(nameof(ModelWorker), "The engine has been disposed.");
        }
        return tcs.Task;
    }

    private void Loop()
    {
        foreach (var item in _queue.GetConsumingEnumerable()) item();
    }

    /// <summary>Lets queued work finish, then stops the thread.</summary>
    public void Dispose()
    {
        _queue.CompleteAdding();
        if (Thread.CurrentThread != _thread) _thread.Join();
        _queue.Dispose();
    }
}
