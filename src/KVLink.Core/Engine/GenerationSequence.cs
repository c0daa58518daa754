using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// One generation request in the scheduler, from admission to its result: on start it allocates its cache and places the
/// prompt prefix, the documents (re-rotated) and the conversation's kept turns (KVLink), or nothing (full prefill); its
/// computed prompt rows run in the scheduler's steps, batched with other requests; then each step feeds back the token
/// chosen by its <see cref="DecodeLoop"/>. Completes with the <see cref="GenerationResult"/> (keeping the conversation's
/// cache when it is a chat turn) when the loop finishes, and leaves at once.
/// </summary>
internal sealed class GenerationSequence(EngineContext c, PromptPrefixes prefixes, ConversationSessions sessions, PreparedRequest request,
    TextEmitter emitter, TokenLogprobs? logprobs, CancellationToken cancellation)
    : ScheduledSequence(cancellation, background: false)
{
    private readonly TaskCompletionSource<GenerationResult> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<int> _generated = [];
    private Placement? _placement;
    private DecodeLoop? _loop;
    private TimeSpan? _firstToken;
    private GenerationResult? _result; // prepared by the last Advance, published by Complete
    private long _next; // the position the next chosen token sits at
    private readonly TimeSpan _submitted = request.Clock.Elapsed;

    /// <summary>
    /// What placing the request's caches did: the prompt positions left to compute, token accounting and times, where the
    /// documents end (a conversation's kept cache starts there), and the prefix length to keep once computed (when the
    /// prefix was evicted between preparation and placement, its rows are computed first, as the request's own).
    /// </summary>
    private sealed record Placement(long[] Positions, int Cached, int Computed, TimeSpan Load, TimeSpan Rerotate, TimeSpan PrefillStart, int DocumentsEnd,
        int PrefixToKeep);

    /// <summary>Time from being queued to joining the running batch (set by <see cref="Start"/>).</summary>
    public TimeSpan QueueWait { get; private set; }

    public Task<GenerationResult> Task => _done.Task;

    /// <summary>The request, for the scheduler's telemetry.</summary>
    public PreparedRequest Request => request;

    /// <summary>Cache positions the request needs: its prompt and its answer, within the model's positions.</summary>
    // Long arithmetic: MaxNewTokens = int.MaxValue means "until a stop token or the end of the context".
    public override int CacheTokens => (int)Math.Min((long)request.Layout.Length + request.Options.MaxNewTokens, c.Model.Config.MaxPositionEmbeddings);

    protected override bool WantsLogits => true;

    /// <summary>
    /// A request without a conversation: its placement reads the prompt prefixes (locked) and its own stored documents;
    /// a conversation's kept cache lives on the model thread alone.
    /// </summary>
    public override bool StartsOnAnyThread => request.SessionKey is null && request.PersistedSession is null;

    public override void Start()
    {
        QueueWait = request.Clock.Elapsed - _submitted;
        Cache = AttentionCache.Rent(c.Model, CacheTokens);
        _placement = Place(Cache);
        SetPrompt(_placement.Positions, request.Layout.Tokens);
        _loop = new DecodeLoop(c.Model, Cache, request.Options, new HashSet<int>(request.Options.StopTokenIds ?? c.Format.StopTokenIds), logprobs);
        _next = request.Layout.Length;
    }

    public override bool Advance(Tensor? logits)
    {
        // A prefix this request computed is kept for later requests once its rows are in the cache (the first rows computed).
        if (_placement!.PrefixToKeep > 0 && RowsComputed >= _placement.PrefixToKeep)
        {
            prefixes.Keep(Cache!, request.Layout.Tokens, _placement.PrefixToKeep);
            _placement = _placement with { PrefixToKeep = 0 };
        }
        if (logits is null) return false; // a prompt chunk that is not the last
        int filled = (int)_next; // cache positions holding keys and values: the prompt and every token fed back so far
        if (_loop!.Next(logits, _next) is { } token)
        {
            _firstToken ??= request.Clock.Elapsed;
            _generated.Add(token);
            if (emitter.Push(token)) _loop.StopSequenceMatched(); // the text reached a stop sequence
            if (_loop.Finish is null) SetPending(token, _next++);
        }
        if (_loop.Finish is not { } finish) return false;
        _result = Result(filled, finish, _firstToken ?? request.Clock.Elapsed);
        return true;
    }

    public override void Complete() => _done.TrySetResult(_result!);

    public override void Fail(Exception error)
    {
        if (error is OperationCanceledException oce) _done.TrySetCanceled(oce.CancellationToken);
        else _done.TrySetException(error);
    }

    /// <summary>
    /// KVLink places the prefix and document caches (re-rotated) and the conversation's kept cache, and leaves the other
    /// segment-0 tokens to compute; full prefill leaves every token to compute.
    /// </summary>
    private Placement Place(AttentionCache cache)
    {
        var (r, layout) = (request, request.Layout);
        using var scope = NewDisposeScope();
        if (r.Mode != ContextMode.KvLink)
            return new Placement([.. Enumerable.Range(0, layout.Length).Select(i => (long)i)], r.CachedTokens, layout.Length, TimeSpan.Zero, TimeSpan.Zero, r.Clock.Elapsed, 0, 0);
        var prefixStart = r.Clock.Elapsed;
        // 0 when the prefix was evicted since the request was prepared: then its rows are computed in the request's steps.
        int prefix = prefixes.Place(cache, layout.Tokens, layout.PrefixLength);
        var prefixTime = r.Clock.Elapsed - prefixStart; // a copy
        var transfer = c.Options.CacheTransfer;
        var (load, rerotate) = DocumentPlacement.Place(c.Model, cache, layout,
            [.. r.Entries.Select(e => transfer is null ? (e.Keys, e.Values) : transfer(e, c.Model.Device))]);
        int documentsEnd = layout.Documents.Count > 0 ? layout.Documents[^1].Start + layout.Documents[^1].Length : layout.PrefixLength;
        var sessionStart = r.Clock.Elapsed;
        sessions.Adopt(r.SessionKey, r.PersistedSession);
        int reused = sessions.Place(cache, r.SessionKey, layout, documentsEnd);
        load += prefixTime + (r.Clock.Elapsed - sessionStart);
        // Everything segment-0 after the prefix, except the conversation's kept tokens [documentsEnd, documentsEnd + reused).
        long[] positions = [.. layout.ComputedPositions(prefix).Where(p => p < documentsEnd || p >= documentsEnd + reused)];
        if (positions.Length == 0 || positions[^1] != layout.Length - 1)
            throw new ArgumentException("The prompt must end with segment-0 tokens (the question and generation header).");
        return new Placement(positions, r.CachedTokens + prefix + reused, positions.Length + r.OnDemandTokens, load, rerotate, r.Clock.Elapsed, documentsEnd,
            prefix == 0 ? layout.PrefixLength : 0);
    }

    /// <summary>
    /// The result of the finished request. A conversation keeps its cache after the documents: the first
    /// <paramref name="filled"/> cache positions hold the prompt and the answer tokens fed back.
    /// </summary>
    private GenerationResult Result(int filled, FinishReason finish, TimeSpan ttft)
    {
        var (r, p) = (request, _placement!);
        emitter.Finish();
        if (r.SessionKey is { } key && r.Mode == ContextMode.KvLink) sessions.Keep(Cache!, key, r.Layout, _generated, filled, p.DocumentsEnd);
        var usage = new GenerationUsage(r.Layout.Length, p.Cached, p.Computed, _generated.Count);
        var timings = new GenerationTimings(r.StoreTime + p.Load, p.Rerotate, ttft - p.PrefillStart + r.OnDemandTime, ttft, r.Clock.Elapsed);
        return new GenerationResult(emitter.Text, _generated, finish, usage, timings)
        {
            PromptTokenIds = r.Layout.Tokens,
            Logprobs = logprobs?.Items,
            ConversationId = r.ConversationId,
        };
    }
}
