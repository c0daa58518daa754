using KVLink.Core.Engine;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>
/// A document encode whose own forward genuinely fails inside the real (batched) forward: its cache has fewer positions than
/// its prompt (the chunk that reaches position <c>capacity</c> throws at layer 0, after the sequences before it in the step
/// wrote that layer), or fewer layers than the model (it throws at layer <c>layers</c>, after every sequence of the step
/// wrote the layers before). Nothing in the engine is stubbed: the exception comes from <see cref="AttentionCache"/>.
/// </summary>
internal sealed class BrokenSequence(LlamaForCausalLM model, int tokens, int capacity, int? layers = null)
    : ScheduledSequence(CancellationToken.None, background: false)
{
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Faults with the forward's exception; completes only if the prompt somehow ran to the end.</summary>
    public Task Task => _done.Task;

    /// <summary>Steps that ran rows of it successfully before it failed.</summary>
    public int StepsRun { get; private set; }

    public override int CacheTokens => capacity;

    protected override bool WantsLogits => false;

    public override void Start()
    {
        Cache = new AttentionCache(model.Config with { NumHiddenLayers = layers ?? model.Config.NumHiddenLayers }, capacity, model.DType, model.Device);
        SetPrompt([.. Enumerable.Range(0, tokens).Select(i => (long)i)], [.. Enumerable.Range(0, tokens).Select(i => 5 + i % 50)]);
    }

    public override bool Advance(Tensor? logits)
    {
        StepsRun++;
        return PrefillRemaining == 0;
    }

    public override void Complete() => _done.TrySetResult();

    public override void Fail(Exception error) => _done.TrySetException(error);
}
