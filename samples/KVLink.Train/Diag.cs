using KVLink.Demo;
using KVLink.Core.Model;
using KVLink.Core.Tokenization;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Train;

/// <summary>Development aid: the top predictions of a checkpoint at each response token of a few held-out questions.</summary>
internal static class Diag
{
    public static void Run(Options o)
    {
        string folder = o.Require("model");
        var tokenizer = LlamaTokenizer.FromCheckpointFolder(folder);
        using var model = LlamaCheckpoint.Load(folder, ScalarType.Float32);
        var builder = new TrainingExampleBuilder(tokenizer, KVLink.Core.Prompting.PromptSettingsFile.FormatFor(folder, tokenizer), 0, 2048, DemoRecipe.AnswerPrefix);
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = 1234, TrainQuestionsPerKind = 0, EvalQuestionsPerKind = o.Int("n", 3) });
        using var _ = no_grad();
        if (o.Flag("by-template")) { ByTemplate(model, tokenizer, builder, corpus); return; }
        foreach (var q in corpus.Eval)
        {
            var ex = builder.FromQa(q.Sample, TrainingAttention.Causal);
            int prompt = builder.Layout(q.Sample).Length;
            long[] positions = [.. Enumerable.Range(0, ex.Length).Select(i => (long)i)];
            var step = model.Step(positions, ex.Mask(), null);
            var probs = model.Forward(tensor(ex.Tokens.Select(t => (long)t).ToArray(), [1, ex.Length]), step)[0].softmax(-1);
            Console.WriteLine($"--- {q.Kind}: {q.Sample.Question}");
            foreach (var d in q.Sample.Documents) Console.WriteLine($"    {d.Text}");
            for (int i = prompt; i < ex.Length; i++)
            {
                var (v, idx) = probs[i - 1].topk(3);
                var top = string.Join("  ", Enumerable.Range(0, 3).Select(j => $"{tokenizer.Decode([(int)idx[j].item<long>()]).Replace("\n", "\\n")}:{v[j].item<float>():F2}"));
                Console.WriteLine($"  {tokenizer.Decode([ex.Tokens[i]]).Replace("\n", "\\n"),-14} <- {top}");
            }
        }
    }

    /// <summary>Teacher-forced top-1 accuracy of each answer entity, grouped by the two words before it ("born in", "city in", ...).</summary>
    private static void ByTemplate(LlamaForCausalLM model, LlamaTokenizer tokenizer, TrainingExampleBuilder builder, SyntheticRagCorpus corpus)
    {
        var names = new HashSet<string>(SyntheticRagCorpus.Lexicon.All.Select(n => " " + n));
        var hits = new Dictionary<string, (int Ok, int All)>();
        foreach (var q in corpus.Eval)
        {
            var ex = builder.FromQa(q.Sample, TrainingAttention.Causal);
            int prompt = builder.Layout(q.Sample).Length;
            var predicted = Probe.Predict(model, ex);
            for (int i = prompt + 2; i < ex.Length; i++)
            {
                if (!names.Contains(tokenizer.Decode([ex.Tokens[i]])) || tokenizer.Decode([ex.Tokens[i - 1]]) is not (" in" or " for" or " by")) continue;
                string key = (tokenizer.Decode([ex.Tokens[i - 2]]) + tokenizer.Decode([ex.Tokens[i - 1]])).Trim();
                var (ok, all) = hits.GetValueOrDefault(key);
                hits[key] = (ok + (predicted[i - 1] == ex.Tokens[i] ? 1 : 0), all + 1);
            }
        }
        foreach (var (key, (ok, all)) in hits.OrderBy(h => h.Key)) Console.WriteLine($"{key,-12} {100.0 * ok / all,5:F1}% of {all}");
    }
}
