using KVLink.Core.Training;

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
    public void QuestionsHaveSupportingDocumentsDistractorsAndDisjointSplits()
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
            Assert.Contains(q.Sample.Answer, docs[q.SupportingSlots[^1]].Text);
            if (q.Kind == SyntheticQuestionKind.TwoHop)
            {
                var bridge = docs[q.SupportingSlots[1]].Title!;
                Assert.Contains(bridge, first.Text);                        // the person's document names the bridge entity
                Assert.DoesNotContain(q.Sample.Answer, first.Text);         // but not the answer
            }
        }
        var trainTitles = corpus.Train.SelectMany(q => q.Sample.Documents.Select(d => d.Title)).ToHashSet();
        Assert.DoesNotContain(corpus.Eval.SelectMany(q => q.Sample.Documents), d => trainTitles.Contains(d.Title));
        // Gold documents are not always in the same slot.
        Assert.True(corpus.Eval.Select(q => q.SupportingSlots[0]).Distinct().Count() > 3);
    }
}
