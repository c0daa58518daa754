using System.Diagnostics;
using LLama;
using LLama.Batched;
using LLama.Common;
using LLama.Native;
using LLama.Sampling;

namespace KVLink.Benchmarks;

/// <summary>
/// llama.cpp's batched decoding as LLamaSharp users get it: its <see cref="BatchedExecutor"/> with N conversations on one
/// context. Each conversation is prompted with the same token ids, the executor infers until the prompts are in, then
/// every step prompts each conversation with its last token and calls <see cref="BatchedExecutor.Infer"/> once (one
/// llama_decode of N tokens), and each conversation samples its next token with LLamaSharp's greedy pipeline.
/// </summary>
internal static class LlamaBatchedExecutor
{
    /// <summary>Aggregate decode tokens/s of <paramref name="conversations"/> conversations over <paramref name="steps"/> steps (the prompts not timed).</summary>
    public static async Task<double> DecodeTokensPerSecondAsync(LLamaWeights weights, string modelPath, int[] prompt, int conversations, int steps, int threads)
    {
        using var executor = new BatchedExecutor(weights, LlamaCppRunner.BatchedParams(modelPath, conversations, prompt.Length, steps, threads));
        var tokens = prompt.Select(t => (LLamaToken)t).ToArray();
        var all = new Conversation[conversations];
        var samplers = new GreedySamplingPipeline[conversations];
        for (int c = 0; c < conversations; c++)
        {
            all[c] = executor.Create();
            all[c].Prompt(tokens);
            samplers[c] = new GreedySamplingPipeline();
        }
        // The prompts fill several batches of BatchSize tokens, one Infer() each; a conversation can be sampled only right
        // after the Infer() that completed its prompt (the next one moves the executor's epoch past it).
        var next = new LLamaToken[conversations];
        var sampled = new bool[conversations];
        while (sampled.Contains(false))
        {
            Check(await executor.Infer(), "prompt");
            for (int c = 0; c < conversations; c++)
                if (!sampled[c] && all[c].RequiresSampling) (next[c], sampled[c]) = (all[c].Sample(samplers[c]), true);
        }

        var clock = Stopwatch.StartNew();
        for (int step = 0; step < steps; step++)
        {
            for (int c = 0; c < conversations; c++) all[c].Prompt(next[c]);
            Check(await executor.Infer(), "decode");
            for (int c = 0; c < conversations; c++) next[c] = all[c].Sample(samplers[c]);
        }
        double tokensPerSecond = conversations * steps / clock.Elapsed.TotalSeconds;
        foreach (var c in all) c.Dispose();
        foreach (var s in samplers) s.Dispose();
        return tokensPerSecond;
    }

    private static void Check(DecodeResult result, string what)
    {
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"BatchedExecutor.Infer failed ({what}): {result}");
    }
}
