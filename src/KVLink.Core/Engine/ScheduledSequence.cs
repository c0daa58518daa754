using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// A unit of model work the <see cref="BatchScheduler"/> runs step by step, batched with others: a generation request
/// (<see cref="GenerationSequence"/>), a document encode (<see cref="EncodeSequence"/>) or a compression scoring window
/// (<see cref="ScoreSequence"/>). It owns an attention cache
/// while it runs; its prompt rows are fed in chunks (<see cref="Take"/>), then, if it decodes, one token per step.
/// Everything but the constructor, <see cref="Fail"/> (also called when cancelled while queued) and the task runs on the model thread.
/// </summary>
internal abstract class ScheduledSequence(CancellationToken cancellation, bool background)
{
    private long[] _positions = [];
    private IReadOnlyList<int> _tokens = [];
    private int _cursor;
    private int _pendingToken = -1;
    private long _pendingPosition;

    /// <summary>Cancels the request: honoured while queued (it never starts) and between steps.</summary>
    public CancellationToken Cancellation { get; } = cancellation;

    /// <summary>True for work that yields to interactive requests (precompute, when so configured).</summary>
    public bool Background { get; } = background;

    /// <summary>Positions of attention cache the sequence holds while it runs: what admission charges against the byte budget.</summary>
    public abstract int CacheTokens { get; }

    /// <summary>The cache, from <see cref="Start"/> until the sequence leaves.</summary>
    public AttentionCache? Cache { get; protected set; }

    /// <summary>When it was submitted (a <see cref="TimeProvider.GetTimestamp"/> of the scheduler's clock): how long background work has waited.</summary>
    internal long SubmittedAt { get; set; }

    /// <summary>Where the scheduler keeps it while queued (guarded by the scheduler's lock).</summary>
    internal LinkedListNode<ScheduledSequence>? QueueNode { get; set; }

    /// <summary>The cancellation callback that removes it from the queue; disposed once it leaves the queue.</summary>
    internal CancellationTokenRegistration QueueRegistration { get; set; }

    /// <summary>Prompt rows run so far.</summary>
    protected int RowsComputed => _cursor;

    /// <summary>Prompt rows still to run.</summary>
    public int PrefillRemaining => _positions.Length - _cursor;

    /// <summary>True when the prompt is done and a sampled token waits to be fed back.</summary>
    public bool Decoding => PrefillRemaining == 0 && _pendingToken >= 0;

    /// <summary>Allocates the cache and places what is already known (stored documents, the prompt prefix). Model thread.</summary>
    public abstract void Start();

    /// <summary>
    /// Whether <see cref="Start"/> touches only this sequence and thread-safe shared state, so that the scheduler may run
    /// it on one of LibTorch's threads beside another sequence's (a burst's placements side by side).
    /// </summary>
    public virtual bool StartsOnAnyThread => false;

    /// <summary>
    /// Sets the rows to compute: the tokens at <paramref name="positions"/> (global positions, which are also their places in the cache),
    /// in order; <paramref name="tokens"/> is indexed by position.
    /// </summary>
    protected void SetPrompt(long[] positions, IReadOnlyList<int> tokens) => (_positions, _tokens, _cursor) = (positions, tokens, 0);

    /// <summary>Feeds <paramref name="token"/> back at <paramref name="position"/> in the next step.</summary>
    protected void SetPending(int token, long position) => (_pendingToken, _pendingPosition) = (token, position);

    /// <summary>Takes the next rows: up to <paramref name="max"/> prompt rows, or the one decode row.</summary>
    public Chunk Take(int max)
    {
        if (PrefillRemaining > 0)
        {
            int n = Math.Min(max, PrefillRemaining);
            var positions = _positions.AsSpan(_cursor, n).ToArray();
            var ids = new long[n];
            for (int i = 0; i < n; i++) ids[i] = _tokens[(int)positions[i]];
            int first = _cursor;
            _cursor += n;
            // The wanted rows are the prompt's last ones, so a chunk's are its last ones too.
            return new Chunk(positions, ids, Outputs: Math.Max(0, _cursor - Math.Max(first, OutputsFrom)));
        }
        if (_pendingToken < 0) throw new InvalidOperationException("The sequence has nothing to run.");
        var chunk = new Chunk([_pendingPosition], [_pendingToken], Outputs: 1);
        _pendingToken = -1;
        return chunk;
    }

    /// <summary>Whether the last prompt row's logits are wanted (generation) or only the cache (an encode).</summary>
    protected abstract bool WantsLogits { get; }

    /// <summary>
    /// The first prompt row whose logits are wanted; every row from it to the prompt's end is. By default the last row
    /// when <see cref="WantsLogits"/>, else none (the prompt's length); a scoring sequence wants many (<see cref="ScoreSequence"/>).
    /// </summary>
    protected virtual int OutputsFrom => WantsLogits ? _positions.Length - 1 : _positions.Length;

    /// <summary>
    /// Called after every step that ran rows of this sequence, with the logits of the chunk's output rows when it asked
    /// for them: [vocab] for one row (a generation's last), [rows, vocab] for more (a scoring chunk). Returns true when
    /// the sequence is done (its result prepared, published by <see cref="Complete"/>).
    /// </summary>
    public abstract bool Advance(Tensor? logits);

    /// <summary>Completes the task with <paramref name="error"/> (cancellation when it is one).</summary>
    public abstract void Fail(Exception error);

    /// <summary>
    /// Completes the task with the result <see cref="Advance"/> prepared when it returned true. The scheduler calls it
    /// after it has let the sequence go, so that a caller who resumes on the result finds it neither running nor queued.
    /// </summary>
    public abstract void Complete();

    /// <summary>Frees the cache.</summary>
    public void Release()
    {
        Cache?.Dispose();
        Cache = null;
    }

    /// <summary>Rows of one sequence in one step; the logits of its last <paramref name="Outputs"/> rows are wanted (0: none, only the cache).</summary>
    public readonly record struct Chunk(long[] Positions, long[] Tokens, int Outputs)
    {
        /// <summary>Whether any row's logits are wanted.</summary>
        public bool Output => Outputs > 0;
    }
}
