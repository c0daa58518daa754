using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Generation;

/// <summary>The standard prefill: the whole prompt at positions 0..T-1 with full causal attention, written to the cache.</summary>
internal static class CausalPrefill
{
    /// <summary>Runs the prompt and returns the last token's logits ([1, 1, vocab]).</summary>
    public static Tensor Run(LlamaForCausalLM model, AttentionCache cache, IReadOnlyList<int> prompt)
    {
        if (prompt.Count == 0) throw new ArgumentException("The prompt is empty.", nameof(prompt));
        using var scope = NewDisposeScope();
        long[] positions = [.. Enumerable.Range(0, prompt.Count).Select(i => (long)i)];
        var ids = tensor(prompt.Select(t => (long)t).ToArray(), [1, prompt.Count], device: model.Device);
        var step = model.Step(positions, AttentionMasks.CausalOverSlots(positions, prompt.Count, model.Device), cache);
        return model.Forward(ids, step, lastOnly: true).MoveToOuterDisposeScope();
    }
}
