using KVLink.Demo;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.Training;

namespace KVLink.Train;

/// <summary>
/// <c>slot-free</c>: continues the KVLink phase of a demo checkpoint trained with the numbered header
/// (<c>Document [n](Title: …)</c>) with the slot-free header (<c>Document (Title: …)</c>), so one cache per document
/// serves every slot exactly. Same data and mixture as the KVLink phase of <c>demo</c> (80 % blocked, K from {0, 1, 5});
/// checkpoints every 500 steps into the work folder, and a rerun with the same work folder resumes from the last one.
/// </summary>
internal static class SlotFreeCommand
{
    public const string NumberedFolderName = "kvlink-demo-numbered";

    public static Task RunAsync(Options o)
    {
        var recipe = new DemoRecipe();
        string models = Path.Combine(Demo.RepoRoot(), "models");
        string from = o.Get("from") ?? Path.Combine(models, NumberedFolderName);
        string target = o.Get("out") ?? Path.Combine(models, DemoModel.FolderName);
        string work = o.Get("work") ?? Path.Combine(Path.GetTempPath(), "kvlink-demo-work", "slot-free");
        int steps = o.Int("steps", recipe.SlotFreeSteps);
        var options = recipe.LinkOptions() with
        {
            LearningRate = o.Double("lr", recipe.SlotFreeLearningRate), TotalSteps = steps, WarmupSteps = Math.Min(50, steps / 10),
        };

        var tokenizer = LlamaTokenizer.FromCheckpointFolder(from);
        var format = PromptSettingsFile.FormatFor(from, tokenizer).WithSlotFreeHeader();
        var builder = new TrainingExampleBuilder(tokenizer, format, linkTokens: 0, maxLength: 2048, DemoRecipe.AnswerPrefix, documentLoss: recipe.DocumentLoss);
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = recipe.Seed, TrainQuestionsPerKind = recipe.TrainQuestionsPerKind, MaxFollowUps = recipe.MaxFollowUps });
        var probeSet = corpus.Eval.Take(200).ToList();
        bool resume = File.Exists(Path.Combine(work, "trainer_state.json"));
        DemoRecipe.Log($"slot-free fine-tuning {(resume ? "resumed from " + work : "from " + from)}: {steps} steps, lr {options.LearningRate}, {options.ExamplesPerStep} examples per step");
        using var trainer = resume ? KvLinkTrainer.Resume(work) : KvLinkTrainer.FromPretrained(from, options);
        var mixture = new TrainingMixture(builder, [.. corpus.Train.Select(q => q.Sample)], [], options.BlockedFraction, linkTokenChoices: recipe.LinkTokenChoices);
        var time = recipe.TrainPhase(trainer, mixture, steps, work,
            _ => Probe.Link(trainer.Model, builder, probeSet), o.Cancellation);
        trainer.Model.Dispose();
        DemoRecipe.Log($"slot-free phase: {time:hh\\:mm\\:ss} this run");
        Demo.Export(work, from, target, slotFree: true);
        DemoRecipe.Log($"written to {target}");
        return Task.CompletedTask;
    }
}
