using System.Diagnostics;
using KVLink.Demo;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.Training;

namespace KVLink.Train;

/// <summary>The <c>demo</c> command: retrains both demo models from scratch, then measures the accuracy table.</summary>
internal static class Demo
{
    public static async Task RunAsync(Options o)
    {
        var total = Stopwatch.StartNew();
        var recipe = new DemoRecipe
        {
            FullSteps = o.Int("full-steps", new DemoRecipe().FullSteps),
            LinkSteps = o.Int("link-steps", new DemoRecipe().LinkSteps),
            ExamplesPerStep = o.Int("batch", new DemoRecipe().ExamplesPerStep),
            MicroBatchSize = o.Int("micro-batch", new DemoRecipe().MicroBatchSize),
            TrainQuestionsPerKind = o.Int("questions", new DemoRecipe().TrainQuestionsPerKind),
            CheckpointMinutes = o.Double("checkpoint-minutes", new DemoRecipe().CheckpointMinutes),
            Heads = o.Int("heads", new DemoRecipe().Heads),
            KvHeads = o.Int("kv-heads", new DemoRecipe().KvHeads),
            HeadDim = o.Int("head-dim", new DemoRecipe().HeadDim),
            Intermediate = o.Int("intermediate", new DemoRecipe().Intermediate),
            LinkLearningRate = o.Double("link-lr", new DemoRecipe().LinkLearningRate),
            Hidden = o.Int("hidden", new DemoRecipe().Hidden),
            Layers = o.Int("layers", new DemoRecipe().Layers),
            FullLearningRate = o.Double("lr", new DemoRecipe().FullLearningRate),
            EasyFraction = o.Double("easy", new DemoRecipe().EasyFraction),
            CopySteps = o.Int("copy-steps", new DemoRecipe().CopySteps),
            DrillFraction = o.Double("drill", new DemoRecipe().DrillFraction),
            MaxFollowUps = o.Int("follow-ups", new DemoRecipe().MaxFollowUps),
            DocumentLoss = o.Flag("doc-loss"),
            ComputeType = o.Flag("bf16") ? TorchSharp.torch.ScalarType.BFloat16 : TrainingComputeType.Parse(o.Get("dtype")),
            SlotFree = !o.Flag("numbered"),
        };
        string models = o.Get("out") ?? Path.Combine(RepoRoot(), "models");
        string work = Path.Combine(o.Get("work") ?? Path.Combine(Path.GetTempPath(), "kvlink-demo-work"));
        Directory.CreateDirectory(work);
        DemoRecipe.Log($"recipe {recipe}; load average {DemoRecipe.LoadAverage()}; a rerun with --work {work} resumes");

        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = recipe.Seed, TrainQuestionsPerKind = recipe.TrainQuestionsPerKind, MaxFollowUps = recipe.MaxFollowUps });
        // The curriculum's short samples: 2-4 documents, so look-up is learned among few distractors first.
        var easy = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions
        {
            Seed = recipe.Seed + 1, TrainQuestionsPerKind = recipe.TrainQuestionsPerKind / 2, EvalQuestionsPerKind = 0, MinDocuments = 2, MaxDocuments = 4, MaxFollowUps = recipe.MaxFollowUps,
        });
        string fullWork = Path.Combine(work, "full");
        // A rerun reuses the tokenizer of the work folder (training it again would give the same one, but a resumed
        // checkpoint must keep exactly the files it was trained with).
        var tokenizer = File.Exists(Path.Combine(fullWork, "tokenizer.json")) ? LlamaTokenizer.FromCheckpointFolder(fullWork)
            : DemoRecipe.TrainTokenizer(corpus, fullWork, recipe.SlotFree);
        var format = DemoModel.Format(tokenizer).WithSlotFreeHeader(recipe.SlotFree);
        var builder = new TrainingExampleBuilder(tokenizer, format, linkTokens: 0, maxLength: 2048, DemoRecipe.AnswerPrefix, documentLoss: recipe.DocumentLoss);
        var probeSet = corpus.Eval.Take(200).ToList();
        var qa = corpus.Train.Select(q => q.Sample).ToList();
        DemoRecipe.Log($"corpus {corpus.Train.Count} train / {corpus.Eval.Count} eval questions, vocab {tokenizer.VocabSize}, " +
            $"mean example {qa.Take(500).Average(s => builder.FromQa(s, TrainingAttention.Causal).Length):F0} tokens");

        var config = recipe.Config(tokenizer);
        var fullOptions = recipe.FullOptions();
        TimeSpan fullTime;
        using (var trainer = DemoRecipe.ResumeOrStart(fullWork, () => new KvLinkTrainer(ModelInitializer.Create(config, seed: (int)recipe.Seed, recipe.ComputeType), fullOptions, fullWork)))
        {
            var model = trainer.Model;
            // Fact drills (shuffled restatements of a question's own sentences) beside the QA examples: many look-ups per text.
            var drills = recipe.DrillFraction > 0 ? DemoRecipe.DrillTexts(corpus.Train, recipe.Seed) : [];
            var easyDrills = recipe.DrillFraction > 0 ? DemoRecipe.DrillTexts(easy.Train, recipe.Seed + 1) : [];
            var mixture = new TrainingMixture(builder, qa, drills, blockedFraction: 0, textFraction: recipe.DrillFraction / 2);
            var easyMixture = new TrainingMixture(builder, [.. easy.Train.Select(q => q.Sample)], easyDrills, blockedFraction: 0, textFraction: recipe.DrillFraction);
            // Stage 0: in-context copying (repeated name sequences) forms induction heads within a few hundred steps;
            // look-up then builds on them, since an answer restates its document's sentence.
            var copyMixture = new TrainingMixture(builder, [], DemoRecipe.CopyTexts(recipe.Seed, 4000), blockedFraction: 0, textFraction: 1);
            fullTime = recipe.TrainPhase(trainer, [(copyMixture, recipe.CopySteps), (easyMixture, recipe.CopySteps + (int)(recipe.EasyFraction * recipe.FullSteps)), (mixture, recipe.FullSteps)], fullWork,
                _ => Probe.Run(model, builder, probeSet, TrainingAttention.Causal, 0), o.Cancellation);
            model.Dispose();
        }
        DemoRecipe.Log($"full-attention phase: {fullTime:hh\\:mm\\:ss}");

        string linkWork = Path.Combine(work, "kvlink");
        var linkOptions = recipe.LinkOptions();
        TimeSpan linkTime;
        using (var trainer = DemoRecipe.ResumeOrStart(linkWork, () => KvLinkTrainer.FromPretrained(fullWork, linkOptions)))
        {
            var mixture = new TrainingMixture(builder, qa, [], recipe.BlockedFraction, linkTokenChoices: recipe.LinkTokenChoices);
            linkTime = recipe.TrainPhase(trainer, mixture, recipe.LinkSteps, linkWork,
                _ => Probe.Link(trainer.Model, builder, probeSet), o.Cancellation);
            trainer.Model.Dispose();
        }
        DemoRecipe.Log($"KVLink phase: {linkTime:hh\\:mm\\:ss}");
        var controlTime = Control(recipe, builder, qa, probeSet, fullWork, linkOptions, Path.Combine(work, "control"), o.Cancellation);
        Export(Path.Combine(work, "control"), fullWork, Path.Combine(models, DemoModel.FullAttentionFolderName), recipe.SlotFree);
        Export(linkWork, fullWork, Path.Combine(models, DemoModel.FolderName), recipe.SlotFree);
        var trainTime = total.Elapsed;
        DemoRecipe.Log($"models written to {models}; training took {trainTime:hh\\:mm\\:ss}");
        if (!o.Flag("no-eval"))
            await AccuracyCommand.RunAsync(o, models, $"Training (the `demo` command before this table): {trainTime:h\\:mm\\:ss} wall time " +
                $"(full-attention phase {fullTime:h\\:mm\\:ss}, KVLink phase {linkTime:h\\:mm\\:ss}, full-attention control phase {controlTime:h\\:mm\\:ss}), recipe `{recipe}`.");
    }

    /// <summary>
    /// The control: the full-attention model trained as many more steps as the KVLink phase, with the same schedule but
    /// full attention only, so the upper bound and naive-reuse rows come from a model with the same training budget.
    /// </summary>
    public static TimeSpan Control(DemoRecipe recipe, TrainingExampleBuilder builder, IReadOnlyList<QaSample> qa, IReadOnlyList<SyntheticRagQuestion> probeSet,
        string fullWork, KvLinkTrainingOptions linkOptions, string controlWork, CancellationToken cancellationToken = default)
    {
        using var trainer = DemoRecipe.ResumeOrStart(controlWork, () => KvLinkTrainer.FromPretrained(fullWork, linkOptions with { BlockedFraction = 0 }));
        var mixture = new TrainingMixture(builder, qa, [], blockedFraction: 0);
        var time = recipe.TrainPhase(trainer, mixture, recipe.LinkSteps, controlWork,
            _ => Probe.Run(trainer.Model, builder, probeSet, TrainingAttention.Causal, 0) + " | " + Probe.Run(trainer.Model, builder, probeSet, TrainingAttention.Blocked, 0), cancellationToken);
        trainer.Model.Dispose();
        DemoRecipe.Log($"full-attention control phase: {time:hh\\:mm\\:ss}");
        return time;
    }

    /// <summary>The <c>control</c> command: only the control phase, from an existing work folder of <c>demo</c>.</summary>
    public static void RunControl(Options o)
    {
        var recipe = new DemoRecipe { LinkSteps = o.Int("link-steps", new DemoRecipe().LinkSteps) };
        string work = o.Require("work");
        string fullWork = Path.Combine(work, "full");
        var tokenizer = LlamaTokenizer.FromCheckpointFolder(fullWork);
        var builder = new TrainingExampleBuilder(tokenizer, PromptSettingsFile.FormatFor(fullWork, tokenizer), linkTokens: 0, maxLength: 2048, DemoRecipe.AnswerPrefix, documentLoss: recipe.DocumentLoss);
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = recipe.Seed, TrainQuestionsPerKind = recipe.TrainQuestionsPerKind, MaxFollowUps = recipe.MaxFollowUps });
        var options = recipe.LinkOptions();
        Control(recipe, builder, [.. corpus.Train.Select(q => q.Sample)], [.. corpus.Eval.Take(200)], fullWork, options, Path.Combine(work, "control"), o.Cancellation);
        string models = o.Get("out") ?? Path.Combine(RepoRoot(), "models");
        Export(Path.Combine(work, "control"), fullWork, Path.Combine(models, DemoModel.FullAttentionFolderName), recipe.SlotFree);
    }

    /// <summary>
    /// Copies what a checkpoint needs to be loaded (not the optimizer state) into <paramref name="target"/>, with prompt
    /// settings that record the system text and the document header it was trained with.
    /// </summary>
    public static void Export(string checkpoint, string tokenizerFolder, string target, bool slotFree)
    {
        Directory.CreateDirectory(target);
        foreach (var name in new[] { "config.json", "model.safetensors" })
            File.Copy(Path.Combine(checkpoint, name), Path.Combine(target, name), overwrite: true);
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(tokenizerFolder, name), Path.Combine(target, name), overwrite: true);
        PromptSettingsFile.Write(target, PromptSettingsFile.ReadSystemText(tokenizerFolder) ?? DemoModel.SystemText, slotFree);
    }

    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "KVLink.Core.sln"))) return dir.FullName;
        return Directory.GetCurrentDirectory();
    }
}
