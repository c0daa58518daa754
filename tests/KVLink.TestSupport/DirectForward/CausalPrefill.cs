using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// The standard prefill: the whole prompt at positions 0..T-1 with full causal attention, written to the cache,
/// in chunks of <see cref="ChunkTokens"/> tokens against the growing cache. A chunk attends only to the keys
/// before its end, so no query meets the future keys a single T x T pass would compute and then mask away, and
/// the attention scores and mask stay chunk x S instead of T x T.
/// </summary>
internal static class CausalPrefill
{
    /// <summary>Tokens per chunk: large enough that each GEMM runs at its large-T rate.</summary>
    public const int ChunkTokens = 512;

    /// <summary>Runs the prompt and returns the last token's logits ([1, 1, vocab]).</summary>
    public static Tensor Run(LlamaForCausalLM model, AttentionCache cache, IReadOnlyList<int> prompt, int chunkTokens = ChunkTokens)
    {
        using var scope = NewDisposeScope();
        var hidden = Fill(model, cache, prompt, chunkTokens);
        return model.Logits(hidden).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Writes the keys and values of <paramref name="tokens"/> (positions 0..T-1) to <paramref name="cache"/>
    /// chunk by chunk; returns the last token's final hidden state ([1, 1, hidden]).
    /// </summary>
    public static Tensor Fill(LlamaForCausalLM model, AttentionCache cache, IReadOnlyList<int> tokens, int chunkTokens = ChunkTokens)
    {
        if (tokens.Count == 0) throw new ArgumentException("The prompt is empty.", nameof(tokens));
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkTokens, 1);
        Tensor? last = null;
        for (int start = 0; start < tokens.Count; start += chunkTokens)
        {
            using var scope = NewDisposeScope();
            int length = Math.Min(chunkTokens, tokens.Count - start);
            long[] positions = [.. Enumerable.Range(start, length).Select(i => (long)i)];
            var ids = tensor(tokens.Skip(start).Take(length).Select(t => (long)t).ToArray(), [1, length], device: model.Device);
            var step = model.Step(positions, AttentionMasks.CausalOverCache(positions, start + length, model.Device), cache);
            // Only the final chunk's last row is wanted; earlier chunks only fill the cache.
            var h = model.Hidden(ids, step, lastOnly: true);
            last?.Dispose();
            last = h.MoveToOuterDisposeScope();
        }
        return last!;
    }
}
