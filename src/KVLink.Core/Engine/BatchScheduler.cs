using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Continuous batching on the model thread. Requests and document encodes queue in FIFO order; admission moves them
/// into the running set while <see cref="KvLinkOptions.MaxRunningSequences"/> and <see cref="KvLinkOptions.MaxLiveCacheBytes"/>
/// allow. Every <see cref="Step"/> runs ONE forward over one token of each decoding sequence plus prompt chunks of the
/// others under <see cref="KvLinkOptions.MaxStepTokens"/>; the projections, MLP and norms see all rows at once, and each
/// sequence attends to its own cache (<see cref="SequenceRows"/>). A sequence that finishes or is cancelled leaves at once
/// and frees its cache; a new one joins at the next step.
/// </summary>
/// <remarks>
/// Queue methods are thread safe (one lock); <see cref="Step"/> and the running set belong to the model thread.
/// Background work (precompute, when <see cref="KvLinkOptions.PrecomputeAtLowPriority"/>) is admitted and fed only with
/// what interactive work leaves of the limits and of the step's token budget, until it has waited
/// <see cref="KvLinkOptions.PrecomputeMaxWait"/> since it was submitted: from then on it is admitted ahead of queued
/// requests and its chunks share the budget with theirs in admission order, so constant interactive load cannot starve it.
/// </remarks>
internal sealed class BatchScheduler(LlamaForCausalLM model, KvLinkOptions options, EngineTelemetry? telemetry, Action wake)
{
    private readonly Lock _gate = new();
    private readonly LinkedList<ScheduledSequence> _interactive = new(), _background = new();
    private readonly List<ScheduledSequence> _running = []; // model thread only, in admission order
    private readonly long _bytesPerToken = model.CacheBytesPerToken;
    private readonly TimeProvider _time = options.TimeProvider;
    private long _liveBytes;
    private int _runningCount;
    private bool _closed;

    /// <summary>Sequences waiting for admission.</summary>
    public int Queued { get { lock (_gate) return _interactive.Count + _background.Count; } }

    /// <summary>Sequences admitted and not finished.</summary>
    public int Running => Volatile.Read(ref _runningCount);

    /// <summary>Bytes of the attention caches of the running sequences.</summary>
    public long LiveCacheBytes => Interlocked.Read(ref _liveBytes);

    /// <summary>Sequences that have started (never those cancelled while queued).</summary>
    public long Started => Interlocked.Read(ref _started);
    private long _started;

    /// <summary>Sequences submitted and not yet finished, failed or cancelled: queued, being admitted or running.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);
    private int _outstanding;

    /// <summary>True while anything waits or runs.</summary>
    public bool HasWork => Outstanding > 0;

    /// <summary>
    /// Queues a sequence. Cancelled while queued, it is removed and its task cancelled at once: it never runs.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The engine is shutting down.</exception>
    public void Submit(ScheduledSequence sequence)
    {
        if (sequence.Cancellation.IsCancellationRequested) { sequence.Fail(new OperationCanceledException(sequence.Cancellation)); return; }
        var queue = sequence.Background && options.PrecomputeAtLowPriority ? _background : _interactive;
        sequence.SubmittedAt = _time.GetTimestamp();
        lock (_gate)
        {
            if (_closed) throw new ObjectDisposedException(nameof(KvLinkEngine), "The engine has been disposed.");
            sequence.QueueNode = queue.AddLast(sequence);
            Interlocked.Increment(ref _outstanding);
        }
        if (sequence.Cancellation.CanBeCanceled)
        {
            var registration = sequence.Cancellation.Register(() =>
            {
                lock (_gate)
                {
                    if (sequence.QueueNode is not { } node) return; // already running: the step loop sees the token
                    node.List!.Remove(node);
                    sequence.QueueNode = null;
                }
                Interlocked.Decrement(ref _outstanding); // first: a caller who resumes finds the queue without it
                sequence.Fail(new OperationCanceledException(sequence.Cancellation));
            });
            // A long-lived token must not keep a callback per request: the registration goes when the request leaves the queue.
            bool queued;
            lock (_gate)
            {
                queued = sequence.QueueNode is not null;
                if (queued) sequence.QueueRegistration = registration;
            }
            if (!queued) registration.Dispose();
        }
        wake();
    }

    /// <summary>Refuses new work from now on; queued and running work still completes.</summary>
    public void Close()
    {
        lock (_gate) _closed = true;
    }

    /// <summary>Admits what the limits allow, drops cancelled sequences, and runs one batched forward. Model thread.</summary>
    public void Step()
    {
        Admit();
        for (int i = _running.Count - 1; i >= 0; i--)
            if (_running[i].Cancellation.IsCancellationRequested) Leave(_running[i], new OperationCanceledException(_running[i].Cancellation));
        if (_running.Count == 0) return;

        var (parts, decoding) = Plan();
        if (parts.Count == 0) return;
        if (Run(parts, decoding) is not { } failure) return;
        if (parts.Count == 1) { Leave(parts[0].Sequence, failure); return; }
        telemetry?.SchedulerStepFailed();
        // The batched forward failed, perhaps for one sequence's sake (its input, its cache): run each sequence's rows
        // again alone (a step of one sequence), so only a sequence whose own forward fails gets the exception. The
        // failed attempt may have written some layers' keys and values for some sequences, but only at the positions of
        // their chunks, and a cache's length moves only once every layer has run, to what the rerun sets anyway; the
        // rerun writes those same positions in every layer before attending to them, so nothing of the failed attempt is read.
        for (int i = 0; i < parts.Count; i++)
            if (Run([parts[i]], i < decoding ? 1 : 0) is { } own) Leave(parts[i].Sequence, own);
    }

    /// <summary>
    /// One forward over <paramref name="parts"/>, whose first <paramref name="decoding"/> are decoding sequences' tokens,
    /// then each sequence advances with its logits (a sequence whose <see cref="ScheduledSequence.Advance"/> throws leaves
    /// with that error). Returns the forward's exception, if it threw.
    /// </summary>
    private Exception? Run(List<(ScheduledSequence Sequence, ScheduledSequence.Chunk Chunk)> parts, int decoding)
    {
        using var scope = NewDisposeScope();
        long started = _time.GetTimestamp();
        Tensor? logits;
        try
        {
            // The decoding sequences' rows (first in the step) go through the decode kernel (int8 weights with
            // DecodeWithInt8Weights), prompt rows never: a token's numbers then do not depend on whether a prompt shared its step.
            logits = StepForward.Run(model, parts, new DecodeRows(decoding, options.DecodeWithInt8Weights), options.GroupSteps, options.PadStepRows);
        }
        catch (Exception e) { return e; }
        // Recorded before the sequences advance: a request completed by this step finds its steps already counted.
        telemetry?.SchedulerStep(parts.Count, parts.Sum(p => p.Chunk.Positions.Length), _time.GetElapsedTime(started));
        int row = 0;
        foreach (var (sequence, chunk) in parts)
        {
            bool done;
            // One output row's logits as [vocab] (a generation's next token), several as [rows, vocab] (a scoring chunk).
            var own = chunk.Outputs switch { 0 => null, 1 => logits![0, row], _ => logits![0].narrow(0, row, chunk.Outputs) };
            row += chunk.Outputs;
            try { done = sequence.Advance(own); }
            catch (Exception e) { Leave(sequence, e); continue; }
            if (done) Leave(sequence, null);
        }
        return null;
    }

    /// <summary>Fails everything still queued or running (used when the model thread cannot continue).</summary>
    public void FailAll(Exception error)
    {
        List<ScheduledSequence> queued;
        lock (_gate)
        {
            queued = [.. _interactive, .. _background];
            _interactive.Clear();
            _background.Clear();
            foreach (var s in queued) s.QueueNode = null;
        }
        foreach (var s in queued)
        {
            Interlocked.Decrement(ref _outstanding);
            s.Fail(error);
        }
        foreach (var s in _running.ToArray()) Leave(s, error);
    }

    private void Admit()
    {
        // Again while a round admitted something: requests that arrived during its starts join this step too.
        while (AdmitRound()) { }
    }

    private readonly List<ScheduledSequence> _admitted = []; // reused: Admit runs every step, mostly admitting nothing

    /// <summary>Dequeues what the limits admit now and starts it; false when nothing was admitted.</summary>
    private bool AdmitRound()
    {
        // Counted as running once dequeued, so the limits see each while the next is dequeued; started together after.
        var admitted = _admitted;
        admitted.Clear();
        while (true)
        {
            ScheduledSequence? next;
            lock (_gate) next = NextAdmissible();
            if (next is null) break;
            next.QueueRegistration.Dispose(); // outside the lock: it waits for a callback that may be taking it
            Interlocked.Increment(ref _started);
            _running.Add(next);
            Interlocked.Add(ref _liveBytes, Bytes(next));
            Interlocked.Increment(ref _runningCount);
            admitted.Add(next);
        }
        if (admitted.Count == 0) return false;
        var errors = SequenceStarts.All(admitted, options.GroupSteps && StepGroups.Available(model.Device));
        for (int i = 0; i < admitted.Count; i++)
        {
            var s = admitted[i];
            if (errors[i] is { } e)
            {
                _running.Remove(s);
                Interlocked.Add(ref _liveBytes, -Bytes(s));
                Interlocked.Decrement(ref _runningCount);
                s.Release();
                Interlocked.Decrement(ref _outstanding);
                s.Fail(e);
            }
            else if (s is GenerationSequence g) telemetry?.Admitted(g.QueueWait);
        }
        return true;
    }

    /// <summary>
    /// The next sequence to admit, dequeued, or null. Interactive requests go first, unless the oldest background encode
    /// has waited <see cref="KvLinkOptions.PrecomputeMaxWait"/>: then it goes first, and while the byte budget keeps it
    /// out no request is admitted past it (else requests joining as others leave would keep the bytes taken for ever).
    /// </summary>
    private ScheduledSequence? NextAdmissible()
    {
        if (_background.First is { } oldest && !Yields(oldest.Value))
        {
            var aged = Admissible(_background, out bool noRoom);
            if (aged is not null || noRoom) return aged;
        }
        return Admissible(_interactive, out _) ?? Admissible(_background, out _);
    }

    /// <summary>
    /// The head of <paramref name="queue"/>, dequeued, if the limits take it (FIFO: the head is never skipped).
    /// <paramref name="noRoom"/> tells that the byte budget alone kept it out.
    /// </summary>
    private ScheduledSequence? Admissible(LinkedList<ScheduledSequence> queue, out bool noRoom)
    {
        noRoom = false;
        if (queue.First is not { } node) return null;
        var s = node.Value;
        bool background = queue == _background;
        int sameClass = _running.Count(r => (r.Background && options.PrecomputeAtLowPriority) == background);
        if (sameClass >= options.MaxRunningSequences) return null;
        // Nothing running: admit whatever its size, or a request larger than the budget would wait for ever.
        if (_running.Count > 0 && LiveCacheBytes + Bytes(s) > options.MaxLiveCacheBytes) { noRoom = true; return null; }
        if (background && Yields(s) && _interactive.Count > 0 && _running.Count > 0) return null; // interactive requests first
        queue.Remove(node);
        s.QueueNode = null;
        return s;
    }

    /// <summary>
    /// True for low-priority work that still yields to requests: a background encode (when
    /// <see cref="KvLinkOptions.PrecomputeAtLowPriority"/>) that has waited less than <see cref="KvLinkOptions.PrecomputeMaxWait"/>.
    /// </summary>
    private bool Yields(ScheduledSequence s) =>
        s.Background && options.PrecomputeAtLowPriority && _time.GetElapsedTime(s.SubmittedAt) < options.PrecomputeMaxWait;

    /// <summary>
    /// This step's rows: one per decoding sequence first (<c>Decoding</c> of them), then prompt chunks in admission order
    /// (interactive, and background work that waited too long to yield, before background) with what is left of the
    /// token budget, at least one row so that prompts always progress.
    /// </summary>
    private (List<(ScheduledSequence Sequence, ScheduledSequence.Chunk Chunk)> Parts, int Decoding) Plan()
    {
        var parts = new List<(ScheduledSequence, ScheduledSequence.Chunk)>();
        foreach (var s in _running)
            if (s.Decoding) parts.Add((s, s.Take(1)));
        int decoding = parts.Count;
        int budget = Math.Max(options.MaxStepTokens - parts.Count, 1);
        foreach (bool yielding in new[] { false, true })
            foreach (var s in _running)
            {
                if (budget == 0) break;
                if (s.PrefillRemaining == 0 || Yields(s) != yielding) continue;
                var chunk = s.Take(budget);
                budget -= chunk.Positions.Length;
                parts.Add((s, chunk));
            }
        return (parts, decoding);
    }

    private void Leave(ScheduledSequence s, Exception? error)
    {
        if (!_running.Remove(s)) return;
        Interlocked.Add(ref _liveBytes, -Bytes(s));
        Interlocked.Decrement(ref _runningCount);
        s.Release();
        Interlocked.Decrement(ref _outstanding);
        // The outcome is published last, once the counts are down: a caller who resumes on it finds the queue without it.
        if (error is not null) s.Fail(error);
        else s.Complete();
    }

    private long Bytes(ScheduledSequence s) => s.CacheTokens * _bytesPerToken;
}
