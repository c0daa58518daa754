using KVLink.Core.Training;

namespace KVLink.Core.Tests.Training;

public sealed class TrainingExampleTests(TrainingFixture fixture) : IClassFixture<TrainingFixture>
{
    [Fact]
    public void QaExampleTargetsOnlyAnswerAndEot()
    {
        var builder = fixture.Builder(linkTokens: 2);
        var sample = TrainingFixture.Qa[0];
        var layout = builder.Layout(sample);
        var blocked = builder.FromQa(sample, TrainingAttention.Blocked);
        var full = builder.FromQa(sample, TrainingAttention.Causal);
        var answer = fixture.Tokenizer.Encode(sample.Answer);

        Assert.Equal(layout.Tokens, blocked.Tokens.Take(layout.Length));
        Assert.Equal(answer, blocked.Tokens.Skip(layout.Length).Take(answer.Count));
        Assert.Equal(fixture.Tokenizer.TokenToId("<|eot_id|>"), blocked.Tokens[^1]);
        Assert.Equal(answer.Count + 1, blocked.TargetCount);
        Assert.All(Enumerable.Range(0, blocked.Length), i => Assert.Equal(i >= layout.Length, blocked.Targets[i]));
        Assert.Equal(blocked.Tokens, full.Tokens);
        Assert.Equal(blocked.Targets, full.Targets);

        // Blocked: a token of document 2 cannot see document 1; the answer sees both. Full attention: plain causal.
        int doc1 = layout.Documents[0].Start, doc2 = layout.Documents[1].Start;
        Assert.False(blocked.Visible(doc2 + 1, doc1));
        Assert.True(blocked.Visible(blocked.Length - 1, doc1));
        Assert.True(full.Visible(doc2 + 1, doc1));
        using var mask = blocked.Mask();
        Assert.False(mask[doc2 + 1, doc1].item<bool>());
    }

    [Fact]
    public void TextExampleTargetsEveryTokenAfterTheFirst()
    {
        var example = fixture.Builder().FromText(new TextSample("abc"));
        Assert.Equal(5, example.Length); // BOS a b c EOS
        Assert.Equal([false, true, true, true, true], example.Targets);
        Assert.Equal(TrainingAttention.Causal, example.Attention);
        var truncated = new TrainingExampleBuilder(fixture.Tokenizer, fixture.Format, 2, maxLength: 3).FromText(new TextSample("abcdef"));
        Assert.Equal(3, truncated.Length);
    }

    [Fact]
    public void MixtureIsSeededAndHonoursFractions()
    {
        var mixture = new TrainingMixture(fixture.Builder(), TrainingFixture.Qa, TrainingFixture.Text, blockedFraction: 0.75, textFraction: 0.2);
        var a = new TrainingRandom(3);
        var b = new TrainingRandom(3);
        var first = Enumerable.Range(0, 400).Select(_ => mixture.Next(a)).ToList();
        var second = Enumerable.Range(0, 400).Select(_ => mixture.Next(b)).ToList();
        Assert.Equal(first.Select(e => (e.Attention, string.Join(',', e.Tokens))), second.Select(e => (e.Attention, string.Join(',', e.Tokens))));
        int text = first.Count(e => e.Segments is null);
        int blocked = first.Count(e => e.Attention == TrainingAttention.Blocked);
        Assert.InRange(text, 50, 115);                 // ~80
        Assert.InRange(blocked / (double)(400 - text), 0.65, 0.85);
        Assert.Equal(a.State, b.State);
    }
}
