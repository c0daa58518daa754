using KVLink.Core.Model;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Train;

/// <summary>A quick check that the trainer learns in-context copying: random name sequences, repeated.</summary>
internal static class Sanity
{
    public static void Run(Options o)
    {
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { TrainQuestionsPerKind = 2000, EvalQuestionsPerKind = 10 });
        string work = Path.Combine(Path.GetTempPath(), "kvlink-sanity");
        var tokenizer = DemoRecipe.TrainTokenizer(corpus, work, slotFree: true);
        var format = KVLink.Demo.DemoModel.Format(tokenizer);
        var builder = new TrainingExampleBuilder(tokenizer, format, 0, 2048);
        var names = SyntheticRagCorpus.Lexicon.All.ToArray();
        var r = new TrainingRandom(3);
        string Seq() { var s = string.Join(" ", Enumerable.Range(0, 16).Select(_ => names[r.Next(names.Length)])); return s + " |" + " " + s; }
        var texts = Enumerable.Range(0, 5000).Select(_ => new TextSample(Seq())).ToList();
        var recipe = new DemoRecipe { Layers = o.Int("layers", 2), Hidden = o.Int("hidden", 128) };
        var model = ModelInitializer.Create(recipe.Config(tokenizer), 1);
        var opts = new KvLinkTrainingOptions { LearningRate = o.Double("lr", 2e-3), WarmupSteps = 20, TotalSteps = o.Int("steps", 300), ExamplesPerStep = 8, ComputeType = ScalarType.Float32, MinLearningRateRatio = 0.1, TextFraction = 1 };
        using var trainer = new KvLinkTrainer(model, opts);
        var mixture = new TrainingMixture(builder, [], texts, 0, textFraction: 1);
        trainer.Train(mixture, opts.TotalSteps, new SynchronousProgress<TrainingProgress>(p => { if (p.Step % 25 == 0) DemoRecipe.Log($"step {p.Step} loss {p.Loss:F3}"); }));
    }
}
