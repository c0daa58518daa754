using KVLink.Training;

namespace KVLink.Core.Tests.Training;

public sealed class SyntheticRagCorpusTests
{
    [Fact]
    public void SameSeedGivesIdenticalFilesAndOtherSeedDiffers()
    {
        using var dir = new TempFolder();
        var options = new SyntheticRagCorpusOptions { Seed = 9, TrainQuestionsPerKind = 100, EvalQuestionsPerKind = 500 };
        SyntheticRagCorpus.Generate(options).WriteJsonl(dir.File("a"));
        SyntheticRagCorpus.Generate(options).WriteJsonl(dir.File("b"));
        SyntheticRagCorpus.Generate(options with { Seed = 10 }).WriteJsonl(dir.File("c"));
        foreach (var name in new[] { "train.jsonl", "eval.jsonl" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir.File("a"), name)), File.ReadAllBytes(Path.Combine(dir.File("b"), name)));
            Assert.NotEqual(File.ReadAllBytes(Path.Combine(dir.File("a"), name)), File.ReadAllBytes(Path.Combine(dir.File("c"), name)));
        }
        // The files are valid QA JSONL.
        Assert.Equal(1000, TrainingDataReader.ReadQa(Path.Combine(dir.File("a"), "eval.jsonl")).Count);
        Assert.Equal(200, TrainingDataReader.ReadQa(Path.Combine(dir.File("a"), "train.jsonl")).Count);
    }

    [Fact]
    public void QuestionsHaveSupportingDocumentsDistractorsAndPrivateFacts()
    {
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { TrainQuestionsPerKind = 300, EvalQuestionsPerKind = 500 });
        Assert.Equal(500, corpus.Eval.Count(q => q.Kind == SyntheticQuestionKind.SingleHop));
        Assert.Equal(500, corpus.Eval.Count(q => q.Kind == SyntheticQuestionKind.TwoHop));
        foreach (var q in corpus.Train.Concat(corpus.Eval))
        {
            var docs = q.Sample.Documents;
            Assert.InRange(docs.Count, 5, 10);
            Assert.Equal(docs.Count, docs.Select(d => d.Title).Distinct().Count());
            Assert.Equal(q.Kind == SyntheticQuestionKind.SingleHop ? 1 : 2, q.SupportingSlots.Count);
            var first = docs[q.SupportingSlots[0]];
            Assert.Contains(first.Title!, q.Sample.Question);
            Assert.Contains(q.Gold, docs[q.SupportingSlots[^1]].Text);
            Assert.Contains($" {q.Gold}.", " " + q.Sample.Answer);                  // the response restates the fact(s)
            if (q.Kind == SyntheticQuestionKind.TwoHop)
            {
                var bridge = docs[q.SupportingSlots[1]].Title!;
                Assert.Contains(bridge, first.Text);                        // the person's document names the bridge entity
                Assert.DoesNotContain(q.Gold, first.Text);                  // but not the answer
                Assert.StartsWith(first.Title!, q.Sample.Answer);           // the response restates the person's fact first
                Assert.True(q.Sample.Answer.IndexOf(bridge, StringComparison.Ordinal) < q.Sample.Answer.IndexOf(q.Gold, StringComparison.Ordinal));
            }
            // Every follow-up is answerable from this question's documents.
            foreach (var f in q.Sample.FollowUps ?? [])
                Assert.Contains(docs, d => d.Text.Contains(f.Answer.Split(' ')[^1].TrimEnd('.'), StringComparison.Ordinal));
        }
        Assert.All(corpus.Eval, q => Assert.Null(q.Sample.FollowUps));
        Assert.True(corpus.Train.Average(q => q.Sample.FollowUps?.Count ?? 0) > 4);
        // Facts are private to a question: the same person is born in many different cities across the corpus.
        var births = corpus.Train.Concat(corpus.Eval).SelectMany(q => q.Sample.Documents)
            .Where(d => d.Text.Contains(" was born in ", StringComparison.Ordinal))
            .GroupBy(d => d.Title).Select(g => g.Select(d => d.Text).Distinct().Count());
        Assert.True(births.Average() > 3);
        // Gold documents are not always in the same slot, and every name is in the lexicon.
        Assert.True(corpus.Eval.Select(q => q.SupportingSlots[0]).Distinct().Count() > 3);
        var names = SyntheticRagCorpus.Lexicon.All.ToHashSet();
        Assert.All(corpus.Eval.SelectMany(q => q.Sample.Documents), d => Assert.Contains(d.Title!, names));
        Assert.Equal(484, names.Count);
    }
}
