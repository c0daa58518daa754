using KVLink.Core.Generation;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// One generation request in the scheduler: on start its caches are placed (KVLink) or nothing is (full prefill); its
/// computed prompt tokens run in chunks; then each step feeds back the token chosen by its <see cref="DecodeLoop"/>.
/// Completes with the <see cref="GenerationResult"/> when the loop finishes, and leaves at once.
/// </summary>
internal sealed class GenerationSequence(RequestRunner runner, RequestRunner.Prepared request, TextEmitter emitter, TokenLogprobs? logprobs, CancellationToken cancellation)
    : ScheduledSequence(cancellation, background: false)
{
    private readonly TaskCompletionSource<GenerationResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<int> _generated = [];
    private RequestRunner.Placement? _placement;
    private DecodeLoop? _loop;
    private readonly TokenLogprobs? _logprobs = logprobs;
    private TimeSpan? _firstToken;
    private long _next; // the position the next chosen token sits at
    private readonly TimeSpan _submitted = request.Clock.Elapsed;

    /// <summary>Time from being queued to joining the running batch (set by <see cref="Start"/>).</summary>
    public TimeSpan QueueWait { get; private set; }

    public Task<GenerationResult> Task => _done.Task;

    /// <summary>The request, for the scheduler's telemetry.</summary>
    public RequestRunner.Prepared Request => request;

    // Long arithmetic: MaxNewTokens = int.MaxValue means "until a stop token or the end of the context".
    public override int CacheTokens => runner.Capacity(request);

    protected override bool WantsLogits => true;

    public override void Start()
    {
        QueueWait = request.Clock.Elapsed - _submitted;
        Cache = runner.NewCache(request);
        _placement = runner.Place(request, Cache);
        SetPrompt(_placement.Positions, request.Layout.Tokens);
        _loop = runner.NewLoop(request, Cache, _logprobs);
        _next = request.Layout.Length;
    }

    public override bool Advance(Tensor? logits)
    {
        // A prefix this request computed is kept for later requests once its rows are in the cache (the first rows computed).
        if (_placement!.PrefixToKeep > 0 && RowsComputed >= _placement.PrefixToKeep)
        {
            runner.KeepPrefix(request.Layout, Cache!);
            _placement = _placement with { PrefixToKeep = 0 };
        }
        if (logits is null) return false; // a prompt chunk that is not the last
        int filled = (int)_next; // slots holding keys and values: the prompt and every token fed back so far
        if (_loop!.Next(logits, _next) is { } token)
        {
            _firstToken ??= request.Clock.Elapsed;
            _generated.Add(token);
            if (emitter.Push(token)) _loop.StopSequenceMatched(); // the text reached a stop sequence
            if (_loop.Finish is null) SetPending(token, _next++);
        }
        if (_loop.Finish is not { } finish) return false;
        _done.TrySetResult(runner.Result(request, _placement!, Cache!, _generated, filled, finish, _firstToken ?? request.Clock.Elapsed, emitter, _logprobs));
        return true;
    }

    public override void Fail(Exception error)
    {
        if (error is OperationCanceledException oce) _done.TrySetCanceled(oce.CancellationToken);
        else _done.TrySetException(error);
    }
}
