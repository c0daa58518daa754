using System.Text;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;
using KVLink.Demo;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// A stream's text updates carry the logprobs of their own tokens (<see cref="GenerationUpdate.Logprobs"/>): each
/// delta's bytes are its tokens' bytes, and in order they are the result's logprobs (less any token whose text never
/// appears, cut by a stop sequence).
/// </summary>
public sealed class StreamedLogprobsTests
{
    [Fact]
    public async Task Each_streamed_delta_carries_the_logprobs_of_the_tokens_it_spells()
    {
        await using var engine = await DemoModel.LoadEngineAsync(options: new KvLinkOptions { DType = ComputeDType.Float32 });
        string doc = await engine.PrecomputeAsync(new KvLinkDocument("Neloun was born in Brivevale. Neloun works for Broultek.", "Neloun"));
        foreach (var stop in new string?[] { null, "Bri" })
        {
            var options = new GenerationOptions { MaxNewTokens = 16, Logprobs = true, TopLogprobs = 2, StopSequences = stop is null ? null : [stop] };
            var streamed = new List<TokenLogprob>();
            GenerationResult? result = null;
            int deltas = 0;
            await foreach (var update in engine.GenerateStreamingAsync("Where was Neloun born?", [doc], options))
            {
                if (update.Result is { } r) { result = r; Assert.Null(update.Logprobs); continue; }
                deltas++;
                var logprobs = Assert.IsAssignableFrom<IReadOnlyList<TokenLogprob>>(update.Logprobs);
                Assert.NotEmpty(logprobs);
                if (stop is null) // without a stop sequence nothing is held back, so a delta is exactly its tokens' bytes
                    Assert.Equal(Encoding.UTF8.GetBytes(update.Delta), logprobs.SelectMany(l => l.Bytes).ToArray());
                Assert.All(logprobs, l => Assert.Equal(2, l.TopAlternatives.Count));
                streamed.AddRange(logprobs);
            }
            Assert.NotNull(result);
            Assert.True(deltas > 1, $"{deltas} deltas");
            // In order, the result's logprobs: all of them without a stop sequence; with one, those up to the token whose
            // text met it (a token whose text never appears brings its logprob only in the result).
            Assert.Equal(result!.Logprobs!.Take(streamed.Count).Select(l => (l.TokenId, l.Logprob)), streamed.Select(l => (l.TokenId, l.Logprob)));
            if (stop is null) Assert.Equal(result.Logprobs!.Count, streamed.Count);
            else Assert.True(streamed.Count <= result.Logprobs!.Count);
        }

        // Without logprobs asked for, updates carry none.
        await foreach (var update in engine.GenerateStreamingAsync("Where was Neloun born?", [doc], new GenerationOptions { MaxNewTokens = 4 }))
            Assert.Null(update.Logprobs);
    }
}
