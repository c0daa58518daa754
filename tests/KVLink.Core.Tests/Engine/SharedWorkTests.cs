using KVLink.TestSupport;
using KVLink.Core.Engine;
using Microsoft.Extensions.Time.Testing;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// Shared work (one document encode for every caller asking at once) is cancelled when its last caller gives up, and only
/// then. Callers give up on timeouts of a fake clock, so the order of events is exact.
/// </summary>
public class SharedWorkTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Work_goes_on_while_a_caller_waits_and_is_cancelled_when_the_last_gives_up()
    {
        var clock = new FakeTimeProvider();
        var shared = new SharedWork<string, int>();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var workToken = new TaskCompletionSource<CancellationToken>(TaskCreationOptions.RunContinuationsAsynchronously);
        int runs = 0;
        async Task<int> Work(CancellationToken cancel)
        {
            Interlocked.Increment(ref runs);
            workToken.TrySetResult(cancel);
            started.TrySetResult();
            await Task.Delay(Timeout.Infinite, cancel);
            return 1;
        }

        using var first = new CancellationTokenSource(TimeSpan.FromSeconds(1), clock);
        using var second = new CancellationTokenSource(TimeSpan.FromSeconds(2), clock);
        var a = shared.RunAsync("doc", Work, first.Token);
        var b = shared.RunAsync("doc", Work, second.Token);
        await started.Task.WaitAsync(Wait);
        var cancel = await workToken.Task;

        clock.Advance(TimeSpan.FromSeconds(1)); // the first caller gives up; the second still waits
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a.WaitAsync(Wait));
        Assert.False(cancel.IsCancellationRequested);
        Assert.False(b.IsCompleted);
        Assert.Equal(1, shared.Count);

        clock.Advance(TimeSpan.FromSeconds(1)); // the last caller gives up: the work is cancelled and leaves the table
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => b.WaitAsync(Wait));
        Assert.True(cancel.IsCancellationRequested);
        Assert.Equal(1, runs);

        // The next caller starts the work afresh rather than joining the cancelled one.
        Assert.Equal(7, await shared.RunAsync("doc", _ => Task.FromResult(7), CancellationToken.None).WaitAsync(Wait));
        Assert.Equal(0, shared.Count);
    }

    [Fact]
    public async Task Finished_work_is_served_to_every_waiter_and_a_late_cancellation_changes_nothing()
    {
        var clock = new FakeTimeProvider();
        var shared = new SharedWork<string, int>();
        var release = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1), clock);
        var a = shared.RunAsync("k", _ => release.Task, timeout.Token);
        var b = shared.RunAsync("k", _ => Task.FromResult(-1), CancellationToken.None); // joins: its own work never runs
        release.SetResult(42);
        Assert.Equal(42, await a.WaitAsync(Wait));
        Assert.Equal(42, await b.WaitAsync(Wait));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, shared.Count);
    }

    [Fact]
    public async Task A_document_encode_whose_callers_all_gave_up_never_runs_and_stores_nothing()
    {
        var clock = new FakeTimeProvider();
        await using var engine = fx.Engine();
        var doc = CheckpointFixture.Doc(3, 40);
        // Hold the model thread, so the encode waits in the scheduler's queue while its callers give up.
        var hold = new ManualResetEventSlim();
        var held = engine.OnModelThread(() => { hold.Wait(); return 0; });
        using var first = new CancellationTokenSource(TimeSpan.FromSeconds(1), clock);
        using var second = new CancellationTokenSource(TimeSpan.FromSeconds(2), clock);
        var a = engine.PrecomputeAsync(doc, first.Token);
        var b = engine.PrecomputeAsync(doc, second.Token);
        clock.Advance(TimeSpan.FromSeconds(2));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a.WaitAsync(Wait));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => b.WaitAsync(Wait));
        long started = engine.Scheduler.Started;
        hold.Set();
        await held.WaitAsync(Wait);

        // The cancelled encode left the queue without running; a later precompute encodes the document afresh.
        Assert.Equal(0, engine.Store.Statistics.Entries);
        string id = await engine.PrecomputeAsync(doc).WaitAsync(Wait);
        Assert.Equal(started + 1, engine.Scheduler.Started);
        Assert.Equal(1, engine.Store.Statistics.Entries);
        Assert.Equal(id, engine.DocumentId(doc));
    }
}
