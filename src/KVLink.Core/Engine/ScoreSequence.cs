using KVLink.Core.Compression;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// One window of compression scoring (<see cref="SelfInformation.Windows"/>) run through the scheduler: tokens
/// [From, End-1) at positions 0.. over a small cache of its own, in chunks batched with whatever else runs, every chunk
/// asking for the logits of all its rows from the one that predicts token Start on. Completes with the self-information
/// of tokens [Start, End), what <see cref="SelfInformation.Score"/> computes for that window with its own cache-free forward
/// (token End-1 predicts nothing inside the window, so it is not run: no row before it depends on it).
/// </summary>
internal sealed class ScoreSequence : ScheduledSequence
{
    private readonly LlamaForCausalLM _model;
    private readonly IReadOnlyList<int> _tokens;
    private readonly int _from, _start, _end;
    private readonly double[] _scores;
    private readonly TaskCompletionSource<double[]> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Scores tokens [Start, End) of <paramref name="tokens"/> seeing tokens from From on (<paramref name="window"/>).</summary>
    public ScoreSequence(LlamaForCausalLM model, IReadOnlyList<int> tokens, (int From, int Start, int End) window, bool background, CancellationToken cancellation = default)
        : base(cancellation, background)
    {
        (_model, _tokens) = (model, tokens);
        (_from, _start, _end) = window;
        if (_from < 0 || _start <= _from || _end <= _start || _end > tokens.Count)
            throw new ArgumentOutOfRangeException(nameof(window), window, $"A scoring window of a document of {tokens.Count} tokens must have 0 <= From < Start < End <= {tokens.Count}.");
        _scores = new double[_end - _start];
    }

    /// <summary>The self-information of tokens [Start, End), in order.</summary>
    public Task<double[]> Task => _done.Task;

    /// <summary>The rows run: the window's context and every token but its last.</summary>
    public override int CacheTokens => _end - 1 - _from;

    protected override bool WantsLogits => true;

    /// <summary>Row r predicts token From + r + 1: the rows from the one that predicts Start on are scored.</summary>
    protected override int OutputsFrom => _start - 1 - _from;

    public override void Start()
    {
        if (CacheTokens > _model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"A scoring window of {CacheTokens} tokens exceeds the model's {_model.Config.MaxPositionEmbeddings} positions: lower Compression.Window or Compression.Context.");
        Cache = AttentionCache.Rent(_model, CacheTokens);
        // Positions from 0, as the direct scorer's forward over the window alone.
        SetPrompt([.. Enumerable.Range(0, CacheTokens).Select(i => (long)i)], [.. _tokens.Skip(_from).Take(CacheTokens)]);
    }

    public override bool Advance(Tensor? logits)
    {
        if (logits is not null)
        {
            var rows = logits.dim() == 1 ? logits.unsqueeze(0) : logits; // one output row comes as [vocab]
            int n = (int)rows.shape[0], first = _from + RowsComputed - n + 1; // the chunk's last n rows predict these tokens
            SelfInformation.Of(rows, _tokens, first).CopyTo(_scores, first - _start);
        }
        return PrefillRemaining == 0;
    }

    public override void Complete() => _done.TrySetResult(_scores);

    public override void Fail(Exception error)
    {
        if (error is OperationCanceledException oce) _done.TrySetCanceled(oce.CancellationToken);
        else _done.TrySetException(error);
    }
}
