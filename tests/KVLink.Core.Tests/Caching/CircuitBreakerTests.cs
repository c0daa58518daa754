using KVLink.Core.Caching;
using Microsoft.Extensions.Time.Testing;

namespace KVLink.Core.Tests.Caching;

/// <summary>The breaker every remote store shares, on a fake clock: timeouts, opening, skipping, one probe, closing.</summary>
public sealed class CircuitBreakerTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2), Break = TimeSpan.FromSeconds(10);
    private readonly FakeTimeProvider _clock = new();
    private int _calls;

    private CircuitBreaker Create(int failures = 3) => new(failures, Break, Timeout, _clock, "test");

    private Task<int> Call(CircuitBreaker circuit, Func<Task<int>> body) =>
        circuit.RunAsync(_ => { _calls++; return body(); }, _ => true, CancellationToken.None);

    private static Task<int> Fail() => Task.FromException<int>(new IOException("down"));

    [Fact]
    public async Task An_operation_that_never_answers_is_given_up_at_the_timeout()
    {
        var circuit = Create();
        var never = new TaskCompletionSource<int>();
        var call = Call(circuit, () => never.Task);
        _clock.Advance(Timeout - TimeSpan.FromMilliseconds(1));
        Assert.False(call.IsCompleted);
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        await Assert.ThrowsAsync<TimeoutException>(() => call);
    }

    [Fact]
    public async Task Consecutive_failures_open_it_then_calls_are_skipped_until_one_probe_after_the_break()
    {
        var circuit = Create(failures: 3);
        for (int i = 0; i < 3; i++) await Assert.ThrowsAsync<IOException>(() => Call(circuit, Fail));
        Assert.True(circuit.IsOpen);

        // Open: nothing is called, the caller learns at once.
        for (int i = 0; i < 5; i++) await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(() => Call(circuit, () => Task.FromResult(1)));
        Assert.Equal(3, _calls);

        // After the break exactly one call goes through (the probe); others keep skipping while it runs.
        _clock.Advance(Break);
        var probe = new TaskCompletionSource<int>();
        var probing = Call(circuit, () => probe.Task);
        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(() => Call(circuit, () => Task.FromResult(1)));
        Assert.Equal(4, _calls);
        probe.SetResult(7);
        Assert.Equal(7, await probing);

        // A successful probe closes it: calls go through again, and it takes 3 new failures to reopen.
        Assert.False(circuit.IsOpen);
        Assert.Equal(1, await Call(circuit, () => Task.FromResult(1)));
        await Assert.ThrowsAsync<IOException>(() => Call(circuit, Fail));
        await Assert.ThrowsAsync<IOException>(() => Call(circuit, Fail));
        Assert.False(circuit.IsOpen);
    }

    [Fact]
    public async Task A_failed_probe_reopens_it_for_another_break()
    {
        var circuit = Create(failures: 2);
        for (int i = 0; i < 2; i++) await Assert.ThrowsAsync<IOException>(() => Call(circuit, Fail));
        _clock.Advance(Break);
        var hung = Call(circuit, () => new TaskCompletionSource<int>().Task);
        _clock.Advance(Timeout);
        await Assert.ThrowsAsync<TimeoutException>(() => hung);
        Assert.True(circuit.IsOpen);
        _clock.Advance(Break - TimeSpan.FromSeconds(1));
        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(() => Call(circuit, () => Task.FromResult(1)));
        _clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, await Call(circuit, () => Task.FromResult(1)));
    }

    [Fact]
    public async Task A_success_resets_the_count_and_errors_that_are_not_outages_do_not_count()
    {
        var circuit = Create(failures: 2);
        await Assert.ThrowsAsync<IOException>(() => Call(circuit, Fail));
        await Call(circuit, () => Task.FromResult(1));
        await Assert.ThrowsAsync<IOException>(() => Call(circuit, Fail));
        Assert.False(circuit.IsOpen);

        // An error reply (the server answered) says the server is up.
        for (int i = 0; i < 5; i++)
            await Assert.ThrowsAsync<InvalidOperationException>(() => circuit.RunAsync<int>(_ => throw new InvalidOperationException(), e => e is not InvalidOperationException, CancellationToken.None));
        Assert.False(circuit.IsOpen);
    }

    [Fact]
    public async Task A_caller_cancellation_is_not_a_failure()
    {
        var circuit = Create(failures: 1);
        using var cts = new CancellationTokenSource();
        var call = circuit.RunAsync(_ => new TaskCompletionSource<int>().Task, _ => true, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        Assert.False(circuit.IsOpen);
    }

    [Fact]
    public async Task Zero_failures_never_opens()
    {
        var circuit = Create(failures: 0);
        for (int i = 0; i < 10; i++) await Assert.ThrowsAsync<IOException>(() => Call(circuit, Fail));
        Assert.False(circuit.IsOpen);
        Assert.Equal(10, _calls);
    }
}
