using KVLink.TestSupport;
using KVLink.Core.Compression;
using KVLink.Core.Tests.Engine;

namespace KVLink.Core.Tests.Compression;

public class DocumentCompressorTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
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

    [Fact]
    public void Keeps_exactly_the_highest_scoring_body_tokens_wherever_they_are()
    {
        // Scores chosen so that "keep the first N" or "keep the last N" would both be wrong: the best body tokens sit
        // in the middle and at the end, and two tie (the earlier one wins).
        //            index:   0    1    2    3    4    5    6    7    8    9   10   11
        double[] scores =   [0.0, 0.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 1.0, 5.0, 5.0, 9.5];
        int[] tokens = [.. Enumerable.Range(100, scores.Length)];
        var compressor = new DocumentCompressor(new FixedScores(scores));

        // Header 0-1; body 2-11 (10 tokens); 40% = 4 body tokens: 11 (9.5), 3 (9), 5 (8), 7 (7).
        Assert.Equal([0, 1, 3, 5, 7, 11], compressor.Select(tokens, 0.4, protectedPrefix: 2));
        // 50% = 5: then 9 and 10 tie at 5; the earlier position wins.
        Assert.Equal([0, 1, 3, 5, 7, 9, 11], compressor.Select(tokens, 0.5, protectedPrefix: 2));
        // An always-kept low scorer counts toward the budget and displaces the lowest of the picks.
        Assert.Equal([0, 1, 2, 3, 5, 11], compressor.Select(tokens, 0.4, protectedPrefix: 2, alwaysKeep: [2]));
        Assert.Equal([100, 101, 103, 105, 107, 111], compressor.Compress(tokens, 0.4, protectedPrefix: 2));
    }

    private sealed class FixedScores(double[] scores) : ITokenScorer
    {
        public string Name => "fixed";
        public double[] Score(IReadOnlyList<int> tokens) => tokens.Count == scores.Length ? scores : throw new ArgumentException("length");
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
