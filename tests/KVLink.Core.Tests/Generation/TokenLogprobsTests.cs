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
        Assert.Equal(tok.TokenBytes(20).ToArray(), entry.Bytes);
        Assert.Equal(tok.TokenBytes(30).ToArray(), entry.TopAlternatives[2].Bytes);
    }

    [Fact]
    public void A_token_holding_part_of_a_character_keeps_its_exact_bytes()
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        var tok = Cl100kTestData.Tokenizer;
        // A token whose bytes are not valid UTF-8 on their own (part of a multi-byte character).
        int partial = Enumerable.Range(0, tok.VocabSize).First(id => tok.HasToken(id) && !IsValidUtf8(tok.TokenBytes(id).ToArray()));
        using var logits = zeros(tok.VocabSize);
        var collector = new TokenLogprobs(tok, topK: 0);
        collector.Add(logits, partial);
        var entry = Assert.Single(collector.Items);
        Assert.Equal(tok.TokenBytes(partial).ToArray(), entry.Bytes);
        Assert.NotEqual(entry.Bytes, System.Text.Encoding.UTF8.GetBytes(entry.Token)); // the text alone cannot give them back
    }

    private static bool IsValidUtf8(byte[] bytes)
    {
        try { new System.Text.UTF8Encoding(false, true).GetString(bytes); return true; }
        catch (System.Text.DecoderFallbackException) { return false; }
    }

    [Fact]
    public void Options_refuse_top_logprobs_without_logprobs_or_beyond_20()
    {
        Assert.Throws<ArgumentException>(() => new GenerationOptions { TopLogprobs = 2 }.Validate());
        Assert.Throws<ArgumentOutOfRangeException>(() => new GenerationOptions { Logprobs = true, TopLogprobs = 21 }.Validate());
        Assert.Throws<ArgumentException>(() => new GenerationOptions { StopSequences = [""] }.Validate());
    }
}
