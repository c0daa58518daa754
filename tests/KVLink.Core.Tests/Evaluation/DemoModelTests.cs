using KVLink.TestSupport;
using KVLink.Demo;
using KVLink.Core.Engine;
using KVLink.Training.Evaluation;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Training;

namespace KVLink.Core.Tests.Evaluation;

/// <summary>The committed demo model loads, carries its prompt settings, and really answers held-out questions.</summary>
public sealed class DemoModelTests
{
    [Fact]
    public async Task LoadAsync_takes_the_system_text_a_folder_was_trained_with_unless_options_set_a_format()
    {
        using var dir = new TempFolder();
        SyntheticCheckpoint.Write(dir.Path, SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 1, heads: 2, kvHeads: 1));
        await using (var plain = await KvLinkEngine.LoadAsync(dir.Path, new KvLinkOptions { DType = ComputeDType.Float32 }))
            Assert.Equal(KvLinkLlama3Format.PublishedSystemText, ((KvLinkLlama3Format)plain.PromptFormat).SystemText);
        PromptSettingsFile.Write(dir.Path, "Be brief.");
        await using (var trained = await KvLinkEngine.LoadAsync(dir.Path, new KvLinkOptions { DType = ComputeDType.Float32 }))
            Assert.Equal("Be brief.", ((KvLinkLlama3Format)trained.PromptFormat).SystemText);
        var mine = KvLinkLlama3Format.FromTokenizer(KVLink.Core.Tokenization.LlamaTokenizer.FromCheckpointFolder(dir.Path), "Mine.");
        await using (var own = await KvLinkEngine.LoadAsync(dir.Path, new KvLinkOptions { DType = ComputeDType.Float32, PromptFormat = mine }))
            Assert.Same(mine, own.PromptFormat);
    }

    [Theory]
    [InlineData(DemoModel.FolderName, true)]
    [InlineData(DemoModel.FullAttentionFolderName, false)]
    [InlineData("kvlink-demo-numbered", false)]
    public void The_demo_models_are_in_the_repository_and_small(string name, bool slotFree)
    {
        string? folder = DemoModel.FindFolder(name);
        Assert.NotNull(folder);
        long bytes = Directory.EnumerateFiles(folder!).Sum(f => new FileInfo(f).Length);
        Assert.InRange(bytes, 1 << 20, 10 << 20);
        // The demo default is trained with the slot-free header, so one cache per document serves every slot exactly.
        Assert.Equal(new PromptSettingsFile.Settings(DemoModel.SystemText, slotFree), PromptSettingsFile.Read(folder!));
    }

    [Fact]
    public async Task The_KVLink_demo_model_answers_held_out_questions_from_independently_cached_documents()
    {
        // 50 held-out questions (fresh facts, never trained on), KVLink5 through the engine: a model that had not
        // learned to read its documents would be near 0 %.
        var questions = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = 77, TrainQuestionsPerKind = 0, EvalQuestionsPerKind = 25 }).Eval
            .Select(q => new EvalQuestion(q.Sample.Documents, q.Sample.Question, [q.Gold], q.Kind.ToString())).ToList();
        await using var engine = await DemoModel.LoadEngineAsync(options: new KvLinkOptions { DType = ComputeDType.Float32, LinkTokens = 5 });
        var accuracy = await RagEvaluator.EvaluateAsync(engine, questions, ContextMode.KvLink, 5, maxNewTokens: 24);
        Assert.True(accuracy.Percent(nameof(SyntheticQuestionKind.SingleHop)) >= MinimumSingleHop, $"single-hop {accuracy.Percent(nameof(SyntheticQuestionKind.SingleHop)):F0} %");
    }

    [Fact]
    public async Task The_getting_started_example_computes_only_segment_0_tokens_whatever_slots_the_documents_land_in()
    {
        // docs/getting-started.md step 1, with the defaults: each document precomputed once, then asked about in either order.
        await using var engine = await DemoModel.LoadEngineAsync();
        Assert.False(engine.PromptFormat.DocumentDependsOnSlot);
        string shagux = await engine.PrecomputeAsync(new KvLinkDocument("Shagux was born in Namuport. Shagux works for Gextek.", "Shagux"));
        string thufas = await engine.PrecomputeAsync(new KvLinkDocument("Thufas was born in Zineford. Thufas works for Pentek.", "Thufas"));
        foreach (string[] ids in new[] { new[] { shagux, thufas }, [thufas, shagux] })
        {
            var answer = await engine.GenerateAsync("Where was Thufas born?", ids);
            var layout = await engine.BuildLayoutAsync("Where was Thufas born?", ids, engine.Options.LinkTokens);
            Assert.Equal(layout.ComputedPositions(layout.PrefixLength).Length, answer.Usage.ComputedTokens);
            Assert.Equal(layout.DocumentTokenCount + layout.PrefixLength, answer.Usage.CachedTokens);
            Assert.Contains("Zineford", answer.Text, StringComparison.Ordinal);
        }
        Assert.Equal(2, engine.Store.Statistics.Entries);
    }

    private const double MinimumSingleHop = 40; // measured 63.6 % on 500 (docs/accuracy.md)
}
