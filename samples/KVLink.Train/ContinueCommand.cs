using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.Training;

namespace KVLink.Train;

/// <summary>
/// <c>continue</c>: trains an existing demo checkpoint further, with the slot-free header, full attention or the KVLink
/// mixture (<c>--blocked</c>), and as many follow-up questions per sample as <c>--follow-ups</c> asks for. Checkpoints into
/// <c>--work</c> every <see cref="DemoRecipe.CheckpointMinutes"/>; a rerun with the same work folder resumes exactly.
/// </summary>
internal static class ContinueCommand
{
    public static Task RunAsync(Options o)
    {
        var recipe = new DemoRecipe { CheckpointMinutes = o.Double("checkpoint-minutes", new DemoRecipe().CheckpointMinutes) };
        string from = o.Require("from");
        string work = o.Require("work");
        int steps = o.Int("steps", 2000);
        int followUps = o.Int("follow-ups", recipe.MaxFollowUps);
        var options = recipe.LinkOptions() with
        {
            LearningRate = o.Double("lr", recipe.LinkLearningRate), TotalSteps = steps, WarmupSteps = o.Int("warmup", Math.Min(50, steps / 10)),
            BlockedFraction = o.Double("blocked", 0), ExamplesPerStep = o.Int("batch", recipe.ExamplesPerStep),
            MicroBatchSize = o.Int("micro-batch", recipe.MicroBatchSize), Seed = (ulong)o.Int("seed", (int)recipe.Seed),
        };
        var tokenizer = LlamaTokenizer.FromCheckpointFolder(from);
        var format = PromptSettingsFile.FormatFor(from, tokenizer).WithSlotFreeHeader();
        var builder = new TrainingExampleBuilder(tokenizer, format, linkTokens: 0, maxLength: 2048, DemoRecipe.AnswerPrefix);
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions
        {
            Seed = recipe.Seed + (ulong)o.Int("data-seed", 2), TrainQuestionsPerKind = o.Int("questions", recipe.TrainQuestionsPerKind), MaxFollowUps = followUps,
        });
        var probeSet = corpus.Eval.Take(200).ToList();
        var qa = corpus.Train.Select(q => q.Sample).ToList();
        bool resume = File.Exists(Path.Combine(work, KvLinkTrainer.StateFileName));
        DemoRecipe.Log($"continue {(resume ? "resumed from " + work : "from " + from)}: {steps} steps, lr {options.LearningRate}, blocked {options.BlockedFraction}, " +
            $"{options.ExamplesPerStep} examples per step, up to {followUps} follow-ups, mean example {qa.Take(500).Average(s => builder.FromQa(s, TrainingAttention.Causal).Length):F0} tokens; load {DemoRecipe.LoadAverage()}");
        using var trainer = resume ? KvLinkTrainer.Resume(work) : KvLinkTrainer.FromPretrained(from, options);
        var mixture = new TrainingMixture(builder, qa, [], trainer.Options.BlockedFraction, linkTokenChoices: trainer.Options.BlockedFraction > 0 ? recipe.LinkTokenChoices : null);
        string RunProbe(int _) => trainer.Options.BlockedFraction > 0
            ? Probe.Link(trainer.Model, builder, probeSet)
            : Probe.Run(trainer.Model, builder, probeSet, TrainingAttention.Causal, 0);
        if (!resume) DemoRecipe.Log("before: " + RunProbe(0));
        var time = recipe.TrainPhase(trainer, mixture, steps, work, RunProbe, o.Cancellation);
        trainer.Model.Dispose();
        DemoRecipe.Log($"continue: {time:hh\\:mm\\:ss} this run");
        if (o.Get("out") is { } target)
        {
            Demo.Export(work, from, target, slotFree: true);
            DemoRecipe.Log($"written to {target}");
        }
        return Task.CompletedTask;
    }
}
