using System.Diagnostics;
using System.Globalization;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.Demo;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Train;

/// <summary>
/// <c>train-bench</c>: trainer throughput at several micro-batch sizes in one run, against the trainer before batching
/// (one pass per example, logits at every position) as the same-run baseline.
/// (1) The demo shape (models/kvlink-demo/config.json, random initial weights, the demo's KVLink-phase data: 80 % blocked
/// with K from {0, 1, 5}, 20 % full attention): tokens/s over a few steps of a fixed global batch. (2) One optimizer step
/// on the Llama-3.2-1B shape over the same examples: wall time and peak RSS (reset between sizes through
/// /proc/self/clear_refs). Every size starts from the same initial weights and trains on the same examples.
/// </summary>
internal static class TrainBenchCommand
{
    public static Task RunAsync(Options o)
    {
        var dtype = TrainingComputeType.Parse(o.Get("dtype"));
        int[] sizes = o.Ints("micro-batches") ?? [1, 8, 16, 32];
        int examplesPerStep = o.Int("batch", 32);
        int steps = o.Int("steps", 4);
        int[] sizes1B = o.Ints("micro-batches-1b") ?? [0, 8]; // 0: the trainer before batching
        int examples1B = o.Int("batch-1b", 8);
        int layers1B = o.Int("layers-1b", 16);
        var dtype1B = o.Get("dtype-1b") is { } d1 ? TrainingComputeType.Parse(d1) : dtype;
        string demoFolder = Path.Combine(Demo.RepoRoot(), "models", DemoModel.FolderName);

        var tokenizer = LlamaTokenizer.FromCheckpointFolder(demoFolder);
        var builder = new TrainingExampleBuilder(tokenizer, PromptSettingsFile.FormatFor(demoFolder, tokenizer), linkTokens: 0, maxLength: 2048, DemoRecipe.AnswerPrefix);
        var corpus = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = 1234, TrainQuestionsPerKind = 1000, EvalQuestionsPerKind = 0, MaxFollowUps = 6 });
        var mixture = new TrainingMixture(builder, [.. corpus.Train.Select(q => q.Sample)], [], blockedFraction: 0.8, linkTokenChoices: [0, 1, 5]);
        var random = new TrainingRandom(99);
        var batches = Enumerable.Range(0, steps + 1).Select(_ => Enumerable.Range(0, examplesPerStep).Select(_ => mixture.Next(random)).ToList()).ToList();

        Console.WriteLine($"# train-bench, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, torch threads {get_num_threads()}, " +
            $"load average {DemoRecipe.LoadAverage()}, dtype {dtype} (native bf16: {TrainingComputeType.HasNativeBFloat16})");
        var config = LlamaConfig.Load(Path.Combine(demoFolder, "config.json"));
        Console.WriteLine($"## demo shape (hidden {config.HiddenSize}, {config.NumHiddenLayers} layers, vocab {config.VocabSize}): " +
            $"{steps} steps of {examplesPerStep} examples (+1 warm-up), mean example {batches.SelectMany(b => b).Average(e => e.Length):F0} tokens");
        Console.WriteLine("| micro-batch | tokens/s | tokens per CPU-second | padded tokens / real | ms per step | loss (last step) | vs before batching |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        double? baseline = null;
        // Size 0 is the trainer before batching (one pass per example, logits at every position): the same-run baseline.
        foreach (int size in sizes.Prepend(0))
        {
            using var model = ModelInitializer.Create(config, seed: 1, dtype);
            var options = Options(dtype, examplesPerStep, Math.Max(1, size));
            using var trainer = new KvLinkTrainer(model, options) { PerExampleBaseline = size == 0 };
            trainer.TrainStep(batches[0]);
            long tokens = 0, padded = 0;
            double loss = 0;
            var clock = Stopwatch.StartNew();
            var cpu = Process.GetCurrentProcess().TotalProcessorTime;
            foreach (var batch in batches.Skip(1))
            {
                loss = trainer.TrainStep(batch).Loss;
                tokens += batch.Sum(e => (long)e.Length);
                padded += size == 0 ? batch.Sum(e => (long)e.Length)
                    : TrainingBatch.Plan(batch, options.MicroBatchSize, options.MicroBatchTokens).Sum(m => (long)m.Length * m.Max(e => e.Length));
            }
            double rate = tokens / clock.Elapsed.TotalSeconds;
            // CPU seconds of this process: on a shared machine a steadier measure than wall time (it still counts spin-waits).
            double cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpu).TotalSeconds;
            baseline ??= rate;
            Console.WriteLine($"| {(size == 0 ? "1, before batching (all logits)" : size)} | {rate:F0} | {tokens / cpuSeconds:F0} | {(double)padded / tokens:F2} | {clock.Elapsed.TotalMilliseconds / steps:F0} | {loss:F4} | {rate / baseline:F2}x |");
        }

        if (layers1B <= 0) return Task.CompletedTask;
        var oneB = OneBShape(layers1B);
        var examples = batches.SelectMany(b => b).Take(examples1B).ToList();
        Console.WriteLine($"## Llama-3.2-1B shape (hidden 2048, {layers1B} layers, 32 heads, 8 kv heads, FFN 8192, vocab 128256, tied), {dtype1B}: " +
            $"one optimizer step (AdamW, first step: its moments are allocated) over {examples.Count} demo examples, {examples.Sum(e => e.Length)} tokens");
        Console.WriteLine("| micro-batch | step wall time (s) | tokens/s | peak RSS (GiB) | loss |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (int size in sizes1B)
        {
            GC.Collect();
            bool reset = ResetPeakRss();
            using var model = ModelInitializer.Create(oneB, seed: 1, dtype1B);
            using var trainer = new KvLinkTrainer(model, Options(dtype1B, examples.Count, Math.Max(1, size))) { PerExampleBaseline = size == 0 };
            var clock = Stopwatch.StartNew();
            double loss = trainer.TrainStep(examples).Loss;
            var time = clock.Elapsed;
            Console.WriteLine($"| {(size == 0 ? "1, before batching (all logits)" : size)} | {time.TotalSeconds:F1} | {examples.Sum(e => e.Length) / time.TotalSeconds:F0} | {PeakRssGiB():F2}{(reset ? "" : " (not reset: peak of the process)")} | {loss:F3} |");
        }
        return Task.CompletedTask;
    }

    private static KvLinkTrainingOptions Options(ScalarType dtype, int examplesPerStep, int microBatch) => new()
    {
        LearningRate = 1e-3, WarmupSteps = 0, TotalSteps = 1000, ExamplesPerStep = examplesPerStep, MicroBatchSize = microBatch,
        MicroBatchTokens = 0, ComputeType = dtype, BlockedFraction = 0.8,
    };

    /// <summary>Llama-3.2-1B's shape (as benchmarks/KVLink.Benchmarks builds it), with <paramref name="layers"/> decoder layers.</summary>
    private static LlamaConfig OneBShape(int layers) => new()
    {
        HiddenSize = 2048, IntermediateSize = 8192, NumHiddenLayers = layers, NumAttentionHeads = 32, NumKeyValueHeads = 8, HeadDim = 64,
        VocabSize = 128256, RmsNormEps = 1e-5, RopeTheta = 500000, MaxPositionEmbeddings = 131072, TieWordEmbeddings = true,
        RopeScaling = new Llama3RopeScaling(32, 1, 4, 8192), BosTokenId = 128000, EosTokenIds = [128001, 128009],
    };

    /// <summary>Resets the kernel's peak-RSS counter of this process (Linux: "5" into /proc/self/clear_refs).</summary>
    private static bool ResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return true; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>VmHWM of /proc/self/status in GiB (the process's peak resident set), or NaN off Linux.</summary>
    private static double PeakRssGiB()
    {
        if (!File.Exists("/proc/self/status")) return double.NaN;
        var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        // "VmHWM:\t    2172 kB": a tab, then spaces that pad the number to 8 digits, so from 10 GB on there are none.
        return line is null ? double.NaN : long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / (1024.0 * 1024.0);
    }
}
