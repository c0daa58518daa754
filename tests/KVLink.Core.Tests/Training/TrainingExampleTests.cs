using KVLink.Training;

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

    [Fact]
    public void FollowUpTurnsAddAnswerTargetsThatSeeEverythingAndTheAnswerPrefixIsTrained()
    {
        var builder = new TrainingExampleBuilder(fixture.Tokenizer, fixture.Format, 1, maxLength: 2048, answerPrefix: " ");
        var sample = TrainingFixture.Qa[0] with { FollowUps = [new("And the second?", "b2"), new("Third?", "c3")] };
        var layout = builder.Layout(sample);
        var example = builder.FromQa(sample, TrainingAttention.Blocked);
        int eot = fixture.Tokenizer.TokenToId("<|eot_id|>")!.Value;
        var first = fixture.Tokenizer.Encode(" " + sample.Answer);
        Assert.Equal(first, example.Tokens.Skip(layout.Length).Take(first.Count));
        string tail = fixture.Tokenizer.Decode([.. example.Tokens.Skip(layout.Length)]);
        Assert.Equal($" {sample.Answer}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnd the second?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n b2<|eot_id|>" +
                     "<|start_header_id|>user<|end_header_id|>\n\nThird?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n c3<|eot_id|>", tail);
        // Targets: the three answers and their end-of-turn tokens, nothing of the follow-up questions.
        var targets = Enumerable.Range(0, example.Length).Where(i => example.Targets[i]).Select(i => example.Tokens[i]).ToList();
        Assert.Equal([.. first, eot, .. fixture.Tokenizer.Encode(" b2"), eot, .. fixture.Tokenizer.Encode(" c3"), eot], targets);
        // The last answer sees the first document (follow-ups are segment 0).
        Assert.True(example.Visible(example.Length - 1, layout.Documents[0].Start));
    }

    [Fact]
    public void DocumentLossTargetsDocumentTokensInsideTheirSegment()
    {
        var builder = new TrainingExampleBuilder(fixture.Tokenizer, fixture.Format, 0, documentLoss: true);
        var sample = TrainingFixture.Qa[0];
        var layout = builder.Layout(sample);
        var example = builder.FromQa(sample, TrainingAttention.Blocked);
        foreach (var d in layout.Documents)
        {
            Assert.False(example.Targets[d.Start]);                                 // its first token has no predecessor in its segment
            Assert.All(Enumerable.Range(d.Start + 1, d.TokenIds.Count - 1), i => Assert.True(example.Targets[i]));
        }
        Assert.False(example.Targets[layout.PrefixLength - 1]);
    }

    [Fact]
    public void MixtureDrawsLinkTokenCountsForBlockedExamples()
    {
        var mixture = new TrainingMixture(fixture.Builder(linkTokens: 0), TrainingFixture.Qa, [], blockedFraction: 0.5, linkTokenChoices: [0, 1, 5]);
        var random = new TrainingRandom(5);
        var blockedK = new HashSet<int>();
        var causalK = new HashSet<int>();
        int start = fixture.Format.LinkTokenStart, end = start + fixture.Format.LinkTokenIdCount;
        for (int i = 0; i < 300; i++)
        {
            var e = mixture.Next(random);
            int documents = e.Segments!.Max();
            int k = e.Tokens.Count(t => t >= start && t < end) / documents;
            (e.Attention == TrainingAttention.Blocked ? blockedK : causalK).Add(k);
        }
        Assert.Equal([0, 1, 5], blockedK.Order());      // K = 0, 1, 5 all drawn for blocked examples
        Assert.Equal([0], causalK);                     // causal examples keep the builder's K
        Assert.Throws<ArgumentException>(() => new TrainingMixture(fixture.Builder(), TrainingFixture.Qa, [], 1, linkTokenChoices: [-1]));
    }
}
