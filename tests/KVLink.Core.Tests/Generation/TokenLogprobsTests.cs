using KVLink.Core.Generation;
using KVLink.Core.Tests.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Generation;

public sealed class TokenLogprobsTests
{
    [Fact]
    public void Logprobs_are_log_softmax_of_the_logits_with_the_top_alternatives_in_order()
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        var tok = Cl100kTestData.Tokenizer;
        float[] raw = new float[tok.VocabSize];
        raw[10] = 3f; raw[20] = 2f; raw[30] = 1f; // the rest 0
        using var logits = tensor(raw).reshape(1, 1, -1);
        var collector = new TokenLogprobs(tok, topK: 3);
        collector.Add(logits, 20);

        double z = Math.Log(Math.Exp(3) + Math.Exp(2) + Math.Exp(1) + (raw.Length - 3));
        var entry = Assert.Single(collector.Items);
        Assert.Equal(20, entry.TokenId);
        Assert.Equal(2 - z, entry.Logprob, 3);
        Assert.Equal(new[] { 10, 20, 30 }, entry.TopAlternatives.Select(a => a.TokenId));
        Assert.Equal(3 - z, entry.TopAlternatives[0].Logprob, 3);
        Assert.Equal(System.Text.Encoding.UTF8.GetString(tok.TokenBytes(10)), entry.TopAlternatives[0].Token);
        Assert.All(entry.TopAlternatives, a => Assert.Empty(a.TopAlternatives));
    }

    [Fact]
    public void Options_refuse_top_logprobs_without_logprobs_or_beyond_20()
    {
        Assert.Throws<ArgumentException>(() => new GenerationOptions { TopLogprobs = 2 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { Logprobs = true, TopLogprobs = 21 }.Validate());
        Assert.Throws<ArgumentException>(() => new GenerationOptions { StopSequences = [""] }.Validate());
    }
}
