using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Training.Evaluation;
using KVLink.Core.Tests.Engine;
using KVLink.Core.Prompting;

namespace KVLink.Core.Tests.Evaluation;

public sealed class RagEvaluatorTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    [Theory]
    [InlineData(ContextMode.FullPrefill, 0)]
    [InlineData(ContextMode.KvLink, 1)]
    public async Task EvaluatesEveryQuestionPerKindAndFreesItsCaches(ContextMode mode, int links)
    {
        await using var engine = fx.Engine();
        var samples = new List<EvalQuestion>
        {
            new([new("x is 1", "A"), new("y is 2", "B")], "x?", ["1"], "one"),
            new([new("z is 3", "C")], "z?", ["3"], "one"),
            new([new("w", "D")], "w?", ["w", "ww"]),
        };
        var seen = new List<string>();
        var acc = await RagEvaluator.EvaluateAsync(engine, samples, mode, links, maxNewTokens: 3, onAnswer: (s, r, ok) => seen.Add(s.Question));
        Assert.Equal(2, acc.Total["one"]);
        Assert.Equal(1, acc.Total[RagEvaluator.AllKind]);
        Assert.Equal(["x?", "z?", "w?"], seen);
        Assert.InRange(acc.Overall, 0, 100);
        Assert.Equal(0, ((KVLink.Core.Caching.MemoryKvCacheStore)engine.Store).Count);
    }

    [Fact]
    public void ReadsCorpusAndNqStyleJsonl()
    {
        using var dir = new TempFolder();
        File.WriteAllText(dir.File("e.jsonl"),
            """{"documents":[{"title":"T","text":"a"}],"question":"q1","answer":"x","kind":"single-hop"}""" + "\n\n" +
            """{"question":"q2","answers":["Ann","Anne"],"ctxs":[{"title":"U","text":"Ann did."}],"type":"bridge"}""" + "\n" +
            """{"text":"plain text lines are skipped"}""" + "\n");
        var qs = EvalJsonl.Read(dir.File("e.jsonl"));
        Assert.Equal(2, qs.Count);
        Assert.Equal(new KvLinkDocument("a", "T"), qs[0].Documents[0]);
        Assert.Equal("single-hop", qs[0].Kind);
        Assert.Equal(["Ann", "Anne"], qs[1].Answers);
        Assert.Equal("bridge", qs[1].Kind);
        File.WriteAllText(dir.File("bad.jsonl"), "{\"question\":\"q\"}\n");
        var error = Assert.Throws<InvalidDataException>(() => { EvalJsonl.Read(dir.File("bad.jsonl")); });
        Assert.Contains("bad.jsonl:1", error.Message);
    }
}
