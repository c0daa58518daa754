using KVLink.Core.Compression;
using KVLink.Core.Tests.Engine;

namespace KVLink.Core.Tests.Compression;

public class DocumentCompressorTests(EngineFixture fx) : IClassFixture<EngineFixture>
{
    private IReadOnlyList<int> Tokens => fx.Tokenizer.Encode("Document [1](Title: Kesh) Kesh is a small island with about 900 people; it exports dried fish and wool.\n");

    [Theory]
    [InlineData(0.25)]
    [InlineData(0.5)]
    [InlineData(0.75)]
    [InlineData(1.0)]
    public void Keeps_the_header_and_the_requested_fraction_of_the_body_in_order(double fraction)
    {
        var tokens = Tokens;
        const int header = 24;
        var compressor = new DocumentCompressor(new SelfInformation(fx.Model, window: 16, context: 8));
        int[] kept = compressor.Select(tokens, fraction, header, alwaysKeep: [tokens.Count - 1]);
        Assert.Equal(kept.Order(), kept);
        Assert.Equal(Enumerable.Range(0, header), kept.Take(header));
        Assert.Contains(tokens.Count - 1, kept);
        int body = tokens.Count - header;
        Assert.Equal(header + (int)Math.Ceiling(fraction * body), kept.Length);
    }

    [Fact]
    public void The_same_tokens_model_and_fraction_give_the_same_result()
    {
        var a = new DocumentCompressor(new SelfInformation(fx.Model, window: 16, context: 8)).Compress(Tokens, 0.5, 10);
        var b = new DocumentCompressor(new SelfInformation(fx.Model, window: 16, context: 8)).Compress(Tokens, 0.5, 10);
        Assert.Equal(a, b);
    }

    [Fact]
    public void Windowed_scores_equal_one_pass_scores_when_the_context_covers_the_document()
    {
        var tokens = Tokens;
        var whole = new SelfInformation(fx.Model, window: 4096, context: 4096).Score(tokens);
        var windowed = new SelfInformation(fx.Model, window: 7, context: 4096).Score(tokens);
        Assert.True(double.IsPositiveInfinity(whole[0]));
        for (int i = 1; i < tokens.Count; i++) Assert.Equal(whole[i], windowed[i], 3);
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.5)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void Bad_fractions_are_rejected(double fraction)
    {
        var compressor = new DocumentCompressor(new SelfInformation(fx.Model));
        Assert.Throws<ArgumentOutOfRangeException>(() => compressor.Select(Tokens, fraction, 0));
    }
}
