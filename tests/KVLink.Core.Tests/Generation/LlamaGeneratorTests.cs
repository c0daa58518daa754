using KVLink.TestSupport;
using KVLink.Core.Generation;
using KVLink.Core.Tests.Engine;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Generation;

/// <summary>Standard generation on a synthetic checkpoint: stops, budgets, streaming, seeds, cancellation.</summary>
public class LlamaGeneratorTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private LlamaGenerator Generator => new(fx.Model, fx.Tokenizer);

    private IReadOnlyList<int> Prompt => fx.Tokenizer.Encode(
        Llama3ChatFormat.BeginOfTextToken + Llama3ChatFormat.Message("user", "Tell me about Paris.") + Llama3ChatFormat.Header("assistant"));

    [Fact]
    public void Stops_on_a_stop_token_which_is_not_part_of_the_output()
    {
        var free = Generator.Generate(Prompt, new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [] });
        Assert.Equal(12, free.TokenIds.Count);
        Assert.Equal(FinishReason.Length, free.FinishReason);
        int stop = free.TokenIds[5];
        int firstAt = free.TokenIds.ToList().IndexOf(stop);
        var stopped = Generator.Generate(Prompt, new GenerationOptions { MaxNewTokens = 12, StopTokenIds = [stop] });
        Assert.Equal(FinishReason.Stop, stopped.FinishReason);
        Assert.Equal(free.TokenIds.Take(firstAt), stopped.TokenIds);
        Assert.Equal(fx.Tokenizer.Decode(stopped.TokenIds), stopped.Text);
    }

    [Fact]
    public void Streaming_deltas_concatenate_to_the_text_and_the_last_update_has_the_result()
    {
        var options = new GenerationOptions { MaxNewTokens = 15, StopTokenIds = [], Temperature = 0.8f, Seed = 5 };
        var updates = Generator.Stream(Prompt, options).ToList();
        var result = updates[^1].Result!;
        Assert.All(updates.Take(updates.Count - 1), u => Assert.Null(u.Result));
        Assert.Equal(result.Text, string.Concat(updates.Select(u => u.Delta)));
        Assert.Equal(Generator.Generate(Prompt, options).TokenIds, result.TokenIds);
        Assert.Equal(Prompt.Count, result.Usage.PromptTokens);
        Assert.True(result.Timings.TimeToFirstToken <= result.Timings.Total);
    }

    [Fact]
    public void Seeded_sampling_is_reproducible()
    {
        var o = new GenerationOptions { MaxNewTokens = 10, StopTokenIds = [], Temperature = 1.2f, TopK = 50, TopP = 0.95f, Seed = 9 };
        Assert.Equal(Generator.Generate(Prompt, o).TokenIds, Generator.Generate(Prompt, o).TokenIds);
    }

    [Fact]
    public void Cancellation_is_honoured_between_decode_steps()
    {
        using var cts = new CancellationTokenSource();
        int seen = 0;
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var u in Generator.Stream(Prompt, new GenerationOptions { MaxNewTokens = 50, StopTokenIds = [] }, cts.Token))
                if (++seen == 3) cts.Cancel();
        });
        Assert.InRange(seen, 3, 4);
    }

    [Fact]
    public void Bad_prompts_are_rejected()
    {
        Assert.Throws<ArgumentException>(() => Generator.Generate([]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Generator.Generate([1, 99999]));
        Assert.Throws<ArgumentException>(() => Generator.Generate(Enumerable.Repeat(65, fx.Model.Config.MaxPositionEmbeddings).ToArray()));
    }
}
