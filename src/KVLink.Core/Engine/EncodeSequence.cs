using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// A document encoded through the scheduler: its tokens at positions 0..L-1 under a causal mask over its own cache,
/// in chunks, possibly in the same forward as other documents and requests (each attends only to its own cache, so the
/// result is the document encoded alone). Completes with its keys and values, [layers, kv_heads, L, d] each. Cancelled
/// (every caller waiting for it gave up: <see cref="SharedWork{TKey, T}"/>), it never starts, or leaves between two steps.
/// </summary>
internal sealed class EncodeSequence(LlamaForCausalLM model, IReadOnlyList<int> tokens, bool background, CancellationToken cancellation = default)
    : ScheduledSequence(cancellation, background)
{
    private readonly TaskCompletionSource<(Tensor Keys, Tensor Values)> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private (Tensor Keys, Tensor Values) _result; // exported by the last Advance (before the cache is released), published by Complete

    /// <summary>The keys and values, detached from every dispose scope: the awaiting caller owns them.</summary>
    public Task<(Tensor Keys, Tensor Values)> Task => _done.Task;

    public override int CacheTokens => tokens.Count;

    protected override bool WantsLogits => false;

    public override void Start()
    {
        if (tokens.Count == 0) throw new ArgumentException("A document must have at least one token.", nameof(tokens));
        if (tokens.Count > model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"The document has {tokens.Count} tokens; the model supports at most {model.Config.MaxPositionEmbeddings} positions.", nameof(tokens));
        Cache = AttentionCache.Rent(model, tokens.Count);
        SetPrompt([.. Enumerable.Range(0, tokens.Count).Select(i => (long)i)], tokens);
    }

    public override bool Advance(Tensor? logits)
    {
        if (PrefillRemaining > 0) return false;
        var (k, v) = Cache!.Export(0, tokens.Count);
        _result = (k.DetachFromDisposeScope(), v.DetachFromDisposeScope());
        return true;
    }

    public override void Complete() => _done.TrySetResult(_result);

    public override void Fail(Exception error)
    {
        if (error is OperationCanceledException oce) _done.TrySetCanceled(oce.CancellationToken);
        else _done.TrySetException(error);
    }
}
