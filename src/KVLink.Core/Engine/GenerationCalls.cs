using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;

namespace KVLink.Core.Engine;

/// <summary>
/// One generate or chat call of <see cref="KvLinkEngine"/> from its caller's side: prepares the request, hands it to its
/// sequence (<see cref="RequestRunner.Start"/>) and records the call's span and metrics, whatever its outcome. The streaming
/// form also carries the text deltas from the model thread to the consumer. <c>prepare</c> runs inside the recorded span,
/// so a call refused there (a disposed engine, bad arguments) is recorded as a failed call too.
/// </summary>
internal sealed class GenerationCalls(RequestRunner requests, EngineTelemetry telemetry, Action throwIfDisposed)
{
    /// <summary>Answers a one-shot question.</summary>
    public Task<GenerationResult> RunAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options, CancellationToken ct) =>
        RunAsync(clock => Prepare(query, documentIds, options, clock, ct), documentIds?.Count ?? 0, ct);

    /// <summary>Answers the conversation <paramref name="read"/> returns, keeping its session.</summary>
    public Task<GenerationResult> RunAsync(Func<ConversationPrompt> read, IReadOnlyList<string> documentIds, GenerationOptions? options, CancellationToken ct) =>
        RunAsync(clock => Prepare(read, documentIds, options, clock, ct), documentIds?.Count ?? 0, ct);

    /// <summary>Streams the answer to a one-shot question.</summary>
    public IAsyncEnumerable<GenerationUpdate> StreamAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options, CancellationToken ct) =>
        StreamAsync(clock => Prepare(query, documentIds, options, clock, ct), documentIds?.Count ?? 0, ct);

    /// <summary>Streams the answer to the conversation <paramref name="read"/> returns, keeping its session.</summary>
    public IAsyncEnumerable<GenerationUpdate> StreamAsync(Func<ConversationPrompt> read, IReadOnlyList<string> documentIds, GenerationOptions? options, CancellationToken ct) =>
        StreamAsync(clock => Prepare(read, documentIds, options, clock, ct), documentIds?.Count ?? 0, ct);

    private Task<PreparedRequest> Prepare(string query, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct)
    {
        throwIfDisposed();
        return requests.PrepareAsync(query, documentIds!, options, clock, ct);
    }

    private Task<PreparedRequest> Prepare(Func<ConversationPrompt> read, IReadOnlyList<string> documentIds, GenerationOptions? options, Stopwatch clock, CancellationToken ct)
    {
        throwIfDisposed();
        return requests.PrepareAsync(read(), documentIds!, options, clock, ct, keepSession: true);
    }

    /// <summary>Prepares and runs a request; <paramref name="prepare"/> gets the call's clock.</summary>
    private async Task<GenerationResult> RunAsync(Func<Stopwatch, Task<PreparedRequest>> prepare, int documentCount, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        using var activity = telemetry.StartGenerate(documentCount, streaming: false);
        try
        {
            var request = await prepare(clock).ConfigureAwait(false);
            var result = await requests.Start(request, null, cancellationToken).ConfigureAwait(false);
            telemetry.Generated(activity, request.Mode, request.Options, documentCount, result);
            return result;
        }
        catch (Exception e) when (telemetry.GenerateFailed(activity, e, clock.Elapsed)) { throw; }
    }

    /// <summary>Prepares and runs a request, streaming its text deltas; the last update carries the full result.</summary>
    private async IAsyncEnumerable<GenerationUpdate> StreamAsync(Func<Stopwatch, Task<PreparedRequest>> prepare, int documentCount,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        using var activity = telemetry.StartGenerate(documentCount, streaming: true);
        PreparedRequest request;
        try
        {
            request = await prepare(clock).ConfigureAwait(false);
        }
        catch (Exception e) when (telemetry.GenerateFailed(activity, e, clock.Elapsed)) { throw; }
        // A consumer that stops reading early cancels the rest of the generation.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var deltas = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        // Deltas arrive on the model thread, one token per scheduler step, already cleaned and stop-matched (TextEmitter).
        var run = requests.Start(request, u => deltas.Writer.TryWrite(u), stop.Token);
        // Finished, failed or cancelled (even while queued): the emitter has flushed, so close the channel.
        _ = run.ContinueWith(_ => deltas.Writer.TryComplete(), TaskScheduler.Default);

        // No catch can sit around a yield return: a stream cancelled or abandoned (the consumer stopped reading) leaves
        // the loop without reaching the outcome below, and the finally records it as cancelled.
        bool recorded = false;
        try
        {
            await foreach (var update in deltas.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                cancellationToken.ThrowIfCancellationRequested(); // buffered deltas are not delivered after cancellation
                yield return update;
            }
            GenerationResult final;
            recorded = true; // from here on, the run's own outcome is recorded: its result or its exception
            try { final = await run.ConfigureAwait(false); }
            catch (Exception e) when (telemetry.GenerateFailed(activity, e, clock.Elapsed)) { throw; }
            telemetry.Generated(activity, request.Mode, request.Options, documentCount, final);
            yield return new GenerationUpdate("", final);
        }
        finally
        {
            if (!run.IsCompleted) stop.Cancel();
            if (!recorded) telemetry.GenerateFailed(activity, new OperationCanceledException(cancellationToken), clock.Elapsed);
        }
    }
}
