using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// The reference formulation of KVLink (the official evaluation and training): one forward pass over the
/// whole prompt with positions 0..T-1 and the segment mask. Mathematically equal to encoding each
/// document alone, re-rotating and running the link-token pass: the oracle the engine is tested against.
/// </summary>
internal static class SinglePassForward
{
    /// <summary>Logits of every prompt token ([1, T, vocab]); fills <paramref name="cache"/> when given so decoding can continue.</summary>
    public static Tensor Forward(LlamaForCausalLM model, PromptLayout layout, AttentionCache? cache = null, bool lastOnly = false)
    {
        using var scope = NewDisposeScope();
        long[] positions = [.. Enumerable.Range(0, layout.Length).Select(i => (long)i)];
        var ids = tensor(layout.Tokens.Select(t => (long)t).ToArray(), [1, layout.Length], device: model.Device);
        var step = model.Step(positions, SegmentMask.Build(layout.Segments, model.Device), cache);
        return model.Forward(ids, step, lastOnly).MoveToOuterDisposeScope();
    }
}
