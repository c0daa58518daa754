using System.Diagnostics;
using System.Globalization;
using KVLink.Demo;
using KVLink.Quickstart;
using KVLink.Training;
using KVLink.Training.Evaluation;

namespace KVLink.Core.Tests.Samples;

/// <summary>
/// The README's first command, <c>samples/KVLink.Quickstart</c>: its questions are a seeded random draw from the held-out
/// split that docs/accuracy.md measures (not hand-picked, not training questions), and it prints its own count beside the
/// shipped model's recorded accuracy. The run test starts the real program on the real demo model.
/// </summary>
public sealed class QuickstartTests
{
    private const ulong DemoCorpusSeed = 1234;   // the demo recipe's corpus seed (DemoRecipe.Seed)

    private static string Key(SyntheticRagQuestion q) => q.Sample.Question + " | " + string.Join(" / ", q.Sample.Documents.Select(d => d.Text));

    [Fact]
    public void The_draw_is_the_same_for_its_seed_and_differs_for_another()
    {
        var a = HeldOutQuestions.Draw(DemoCorpusSeed, 500).Select(Key).ToList();
        var b = HeldOutQuestions.Draw(DemoCorpusSeed, 500).Select(Key).ToList();
        var other = HeldOutQuestions.Draw(DemoCorpusSeed, 500, drawSeed: HeldOutQuestions.DefaultDrawSeed + 1).Select(Key).ToList();
        Assert.Equal(6, a.Count);
        Assert.Equal(a, b);
        Assert.NotEqual(a, other);
    }

    [Fact]
    public void The_draw_takes_distinct_held_out_questions_of_both_kinds_and_no_training_question()
    {
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = DemoCorpusSeed, TrainQuestionsPerKind = 2000, EvalQuestionsPerKind = 200 });
        var heldOut = corpus.Eval.Select(Key).ToList();
        var train = corpus.Train.Select(Key).ToHashSet();
        var drawn = HeldOutQuestions.Draw(DemoCorpusSeed, 200);

        Assert.Equal(6, drawn.Select(Key).Distinct().Count());
        Assert.Equal([.. Enumerable.Repeat(new[] { SyntheticQuestionKind.SingleHop, SyntheticQuestionKind.TwoHop }, 3).SelectMany(k => k)], drawn.Select(q => q.Kind));
        foreach (var q in drawn)
        {
            int index = heldOut.IndexOf(Key(q));
            Assert.True(index >= 0, $"'{q.Sample.Question}' is not a held-out question of the first 200 of each kind");
            Assert.Equal(corpus.Eval[index].Gold, q.Gold);
            Assert.DoesNotContain(Key(q), train);
        }
        // Drawn at random from the whole split, not its first questions (the old hand-picked six).
        Assert.Contains(drawn, q => heldOut.IndexOf(Key(q)) >= 6);
    }

    [Fact]
    public void The_draw_rejects_a_split_smaller_than_the_draw()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => HeldOutQuestions.Draw(DemoCorpusSeed, 2));
        Assert.Equal("splitPerKind", e.ParamName);
    }

    [Fact]
    public async Task The_quickstart_answers_the_drawn_questions_and_prints_the_recorded_accuracy_beside_its_count()
    {
        // The program runs from this test's output folder, where KVLink.Demo copied models/kvlink-demo with its accuracy.json.
        var record = AccuracyRecord.Read(DemoModel.FindFolder()!) ?? throw new InvalidOperationException("models/kvlink-demo/accuracy.json was not copied next to the tests.");
        var (code, output) = await RunQuickstartAsync();
        Assert.True(code == 0, output);

        var expected = HeldOutQuestions.Draw(record.CorpusSeed, record.QuestionsPerKind);
        var asked = output.Split('\n').Where(l => l.TrimStart().StartsWith("Q: ", StringComparison.Ordinal)).ToList();
        Assert.Equal(expected.Count, asked.Count);
        for (int i = 0; i < expected.Count; i++)
            Assert.Contains($"Q: {expected[i].Sample.Question}   (expected: {expected[i].Gold};", asked[i]);

        Assert.Matches(@"KVLink5 answered [0-6]/6 correctly\. Mean TTFT: KVLink [0-9.]+ ms vs full prefill [0-9.]+ ms", output);
        var kvlink = record.KvLink(5)!;
        var full = record.FullPrefill!;
        string F(double v) => v.ToString("F1", CultureInfo.InvariantCulture);
        Assert.Contains($"Measured on the whole split ({record.QuestionsPerKind} + {record.QuestionsPerKind} questions, {record.Measured:yyyy-MM-dd}; {record.Source}): " +
            $"KVLink5 {F(kvlink.SingleHopPercent)} % single-hop, {F(kvlink.TwoHopPercent)} % two-hop; full prefill {F(full.SingleHopPercent)} % / {F(full.TwoHopPercent)} %.", output);
    }

    [Fact]
    public async Task The_quickstart_rejects_a_bad_seed_before_loading_the_model()
    {
        var (code, output) = await RunQuickstartAsync("--seed", "abc");
        Assert.Equal(1, code);
        Assert.Contains("--seed must be a non-negative integer (was 'abc').", output);
        Assert.DoesNotContain("Model:", output);
    }

    private static async Task<(int Code, string Output)> RunQuickstartAsync(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = AppContext.BaseDirectory };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "KVLink.Quickstart.dll"));
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var limit = new CancellationTokenSource(TimeSpan.FromMinutes(5));   // a hang fails the test instead of the run
        try { await process.WaitForExitAsync(limit.Token); }
        catch (OperationCanceledException) { process.Kill(entireProcessTree: true); throw new TimeoutException("the quickstart did not finish in 5 minutes"); }
        return (process.ExitCode, await stdout + await stderr);
    }
}
