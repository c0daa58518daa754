using KVLink.Training;

namespace KVLink.Core.Tests.Training;

public sealed class TrainingDataTests
{
    [Fact]
    public void ReadsQaAndTextSamples()
    {
        using var dir = new TempFolder();
        string qa = dir.File("qa.jsonl");
        File.WriteAllText(qa,
            """{"documents":[{"title":"A","text":"alpha"},{"text":"beta"}],"question":"q?","answer":"a"}""" + "\n\n" +
            """{"documents":[],"question":"q2","answer":"a2"}""" + "\n");
        var samples = TrainingDataReader.ReadQa(qa);
        Assert.Equal(2, samples.Count);
        Assert.Equal("A", samples[0].Documents[0].Title);
        Assert.Equal("beta", samples[0].Documents[1].Text);
        Assert.Null(samples[0].Documents[1].Title);
        Assert.Equal("a2", samples[1].Answer);

        string text = dir.File("text.jsonl");
        File.WriteAllText(text, """{"text":"hello"}""" + "\n" + """{"text":"world","id":3}""");
        Assert.Equal(["hello", "world"], TrainingDataReader.ReadText(text).Select(t => t.Text));
    }

    [Fact]
    public void RoundTripsQaThroughWriter()
    {
        using var dir = new TempFolder();
        string path = dir.File("qa.jsonl");
        TrainingDataReader.WriteQa(path, TrainingFixture.Qa);
        var back = TrainingDataReader.ReadQa(path);
        Assert.Equal(TrainingFixture.Qa.Select(q => q.Answer), back.Select(q => q.Answer));
        Assert.Equal(TrainingFixture.Qa[1].Documents.Select(d => d.Text), back[1].Documents.Select(d => d.Text));
    }

    [Theory]
    [InlineData("""{"documents":[],"question":"q","answer":"a"}""" + "\n" + """{"documents":[],"question":"q" """, 2, "invalid JSON")]
    [InlineData("""{"documents":[],"answer":"a"}""", 1, "missing field 'question'")]
    [InlineData("""{"question":"q","answer":"a"}""", 1, "missing field 'documents'")]
    [InlineData("\n" + """{"documents":[{"title":"t"}],"question":"q","answer":"a"}""", 2, "missing field 'documents[0].text'")]
    [InlineData("""{"documents":[],"question":"q","answer":5}""", 1, "field 'answer' must be a string")]
    [InlineData("[1,2]", 1, "expected a JSON object")]
    public void BadQaLinesNameFileAndLine(string content, int line, string expected)
    {
        using var dir = new TempFolder();
        string path = dir.File("bad.jsonl");
        File.WriteAllText(path, content);
        var e = Assert.Throws<TrainingDataException>(() => TrainingDataReader.ReadQa(path));
        Assert.Equal(line, e.Line);
        Assert.Equal(path, e.File);
        Assert.Contains($"{path}:{line}:", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void BadTextLineNamesFileAndLine()
    {
        using var dir = new TempFolder();
        string path = dir.File("bad.jsonl");
        File.WriteAllText(path, """{"text":"ok"}""" + "\n" + """{"body":"x"}""");
        var e = Assert.Throws<TrainingDataException>(() => TrainingDataReader.ReadText(path));
        Assert.Contains($"{path}:2: missing field 'text'", e.Message);
    }

    [Fact]
    public void MissingFileIsReported()
    {
        using var dir = new TempFolder();
        Assert.Throws<FileNotFoundException>(() => TrainingDataReader.ReadQa(dir.File("none.jsonl")));
    }

    [Fact]
    public void ScheduleWarmsUpLinearlyThenDecaysByCosine()
    {
        var o = new KvLinkTrainingOptions { LearningRate = 1.0, WarmupSteps = 4, TotalSteps = 14, MinLearningRateRatio = 0.1 };
        Assert.Equal(0.25, LearningRateSchedule.At(0, o), 12);
        Assert.Equal(1.0, LearningRateSchedule.At(3, o), 12);
        Assert.Equal(1.0, LearningRateSchedule.At(4, o), 12);
        Assert.Equal(0.55, LearningRateSchedule.At(9, o), 12);
        Assert.Equal(0.1, LearningRateSchedule.At(14, o), 12);
        Assert.Equal(0.1, LearningRateSchedule.At(100, o), 12);
    }
}
