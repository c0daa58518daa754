using System.Diagnostics;
using KVLink.Demo;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Train;

/// <summary>
/// How the demo model is made, start to finish: corpus, tokenizer, a 4-layer Llama trained from scratch with full attention,
/// then KVLink fine-tuning (segment mask, K drawn from {0, 1, 5}). Every number of the recipe lives here.
/// </summary>
internal sealed record DemoRecipe
{
    public ulong Seed { get; init; } = 1234;
    public int TrainQuestionsPerKind { get; init; } = 20000;
    /// <summary>Share of the full-attention steps trained on short samples (2-4 documents) first: a curriculum.</summary>
    public double EasyFraction { get; init; } = 0.3;
    public bool DocumentLoss { get; init; }
    public int MaxFollowUps { get; init; } = 6;
    /// <summary>Share of fact drills (<see cref="DrillTexts"/>) among the examples of the easy stage; the full stage draws half as many.</summary>
    public double DrillFraction { get; init; }
    /// <summary>Steps of the copying warm-up that opens the full-attention phase.</summary>
    public int CopySteps { get; init; } = 600;
    public int Hidden { get; init; } = 128;
    public int Layers { get; init; } = 4;
    public int Heads { get; init; } = 4;
    public int KvHeads { get; init; } = 2;
    /// <summary>Width of each attention head; 0 means <see cref="Hidden"/> / <see cref="Heads"/>.</summary>
    public int HeadDim { get; init; }
    public int Intermediate { get; init; } = 384;
    public int FullSteps { get; init; } = 6000;
    public int LinkSteps { get; init; } = 1500;
    public int ExamplesPerStep { get; init; } = 8;
    /// <summary>Examples per forward/backward (padded micro-batch); the step's gradients accumulate over its micro-batches.</summary>
    public int MicroBatchSize { get; init; } = 16;
    /// <summary>Minutes between checkpoints into the work folder (and at every phase's end); a rerun resumes from the last.</summary>
    public double CheckpointMinutes { get; init; } = 5;
    public double FullLearningRate { get; init; } = 2e-3;
    public double LinkLearningRate { get; init; } = 1e-3;
    public double BlockedFraction { get; init; } = 0.8;
    public int[] LinkTokenChoices { get; init; } = [0, 1, 5];
    public ScalarType ComputeType { get; init; } = ScalarType.Float32;
    /// <summary>Documents headed <c>Document (Title: …)</c>, with no slot number, so one cache per document serves every slot (the demo default).</summary>
    public bool SlotFree { get; init; } = true;
    /// <summary>Steps of the <c>slot-free</c> command (numbered checkpoint → slot-free header) and its peak learning rate.</summary>
    public int SlotFreeSteps { get; init; } = 2500;
    public double SlotFreeLearningRate { get; init; } = 5e-4;

    /// <summary>Answers are trained with a leading space, so they are the same tokens as in the documents.</summary>
    public const string AnswerPrefix = " ";

    public static void Log(string message) => Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");

    /// <summary>The 1, 5 and 15-minute load averages (/proc/loadavg), or "n/a" off Linux: throughput means little without them.</summary>
    public static string LoadAverage()
    {
        try { return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "n/a"; }
        catch (UnauthorizedAccessException) { return "n/a"; }
    }

    /// <summary>Writes the tokenizer (BPE learned from the training split and the lexicon) into <paramref name="folder"/>.</summary>
    public static LlamaTokenizer TrainTokenizer(SyntheticRagCorpus corpus, string folder, bool slotFree)
    {
        Directory.CreateDirectory(folder);
        var texts = corpus.Train.Take(4000).SelectMany(q => q.Sample.Documents.Select(d => slotFree ? KvLinkLlama3Format.SlotFreeDocumentText(d) : KvLinkLlama3Format.DocumentText(d, 0))
                .Append(q.Sample.Question).Append(AnswerPrefix + q.Sample.Answer)
                .Concat((q.Sample.FollowUps ?? []).Select(f => f.Question)))
            .Concat(SyntheticRagCorpus.Lexicon.All.SelectMany(n => Enumerable.Repeat(" " + n, 20)))
            .Concat(SyntheticRagCorpus.TemplateTexts()).Append(DemoModel.SystemText)
            .Concat(Enumerable.Range(1, 20).Select(i => $"Document [{i}](Title: x) y\n"));
        var bpe = BpeTokenizerTrainer.Train(texts, merges: 6000, minCount: 10);
        BpeTokenizerTrainer.Write(Path.Combine(folder, "tokenizer.json"), bpe);
        PromptSettingsFile.Write(folder, DemoModel.SystemText, slotFree);
        var tokenizer = LlamaTokenizer.FromCheckpointFolder(folder);
        var split = SyntheticRagCorpus.Lexicon.All.Where(n => tokenizer.Encode(" " + n).Count != 1).ToList();
        if (split.Count > 0) throw new InvalidOperationException($"{split.Count} names are not single tokens, e.g. '{split[0]}'.");
        return tokenizer;
    }

    /// <summary>Copying texts: 16 random names of the lexicon, " |", then the same 16 names.</summary>
    public static List<TextSample> CopyTexts(ulong seed, int count)
    {
        var names = SyntheticRagCorpus.Lexicon.All.ToArray();
        var r = new TrainingRandom(seed ^ 0xC0C0);
        return [.. Enumerable.Range(0, count).Select(_ =>
        {
            string s = string.Join(" ", Enumerable.Range(0, 16).Select(_ => names[r.Next(names.Length)]));
            return new TextSample(s + " | " + s);
        })];
    }

    /// <summary>
    /// Fact drills: the sentences of one question's documents, " |", then the same sentences in a shuffled order. Copying
    /// warm-up texts keep their order, which a previous-token induction head answers; shuffled, each restated fact can only
    /// be completed by finding the sentence with the same subject and relation, the look-up every answer needs, about 15
    /// times per text instead of the one or two look-ups a QA example trains.
    /// </summary>
    public static List<TextSample> DrillTexts(IEnumerable<SyntheticRagQuestion> questions, ulong seed)
    {
        var r = new TrainingRandom(seed ^ 0xD1D1);
        var texts = new List<TextSample>();
        foreach (var q in questions)
        {
            var sentences = q.Sample.Documents.SelectMany(d => d.Text.Split(". ", StringSplitOptions.RemoveEmptyEntries))
                .Select(x => x.EndsWith('.') ? x : x + ".").ToArray();
            var shuffled = (string[])sentences.Clone();
            for (int i = shuffled.Length - 1; i > 0; i--)
            {
                int j = r.Next(i + 1);
                (shuffled[i], shuffled[j]) = (shuffled[j], shuffled[i]);
            }
            texts.Add(new TextSample(string.Join(" ", sentences) + " | " + string.Join(" ", shuffled)));
        }
        return texts;
    }

    /// <summary>Trainer options of the full-attention phase.</summary>
    public KvLinkTrainingOptions FullOptions() => new()
    {
        LearningRate = FullLearningRate, MinLearningRateRatio = 0.1, WarmupSteps = Math.Min(100, FullSteps / 10),
        TotalSteps = FullSteps, ExamplesPerStep = ExamplesPerStep, MicroBatchSize = MicroBatchSize, MicroBatchTokens = 0, ComputeType = ComputeType, Seed = Seed,
        BlockedFraction = 0, LinkTokens = 0, MaxLength = 2048, WeightDecay = 0.01,
    };

    /// <summary>Trainer options of the KVLink phase (the control uses them with BlockedFraction 0).</summary>
    public KvLinkTrainingOptions LinkOptions() => FullOptions() with
    {
        LearningRate = LinkLearningRate, WarmupSteps = Math.Min(50, LinkSteps / 10), TotalSteps = LinkSteps, BlockedFraction = BlockedFraction,
    };

    /// <summary>Replaces the text between <paramref name="begin"/> and <paramref name="end"/> in a docs file (appending the markers when absent).</summary>
    public static string WriteMarkedSection(string file, string title, string begin, string end, string content)
    {
        string path = Path.Combine(Demo.RepoRoot(), "docs", file);
        string doc = File.Exists(path) ? File.ReadAllText(path) : $"# {title}\n";
        if (doc.IndexOf(begin, StringComparison.Ordinal) is var b && (b < 0 || doc.IndexOf(end, b, StringComparison.Ordinal) < 0))
            doc += $"\n{begin}\n{end}\n";
        b = doc.IndexOf(begin, StringComparison.Ordinal);
        int e = doc.IndexOf(end, b, StringComparison.Ordinal);
        File.WriteAllText(path, doc[..(b + begin.Length)] + "\n" + content.Trim() + "\n" + doc[e..]);
        return path;
    }

    public LlamaConfig Config(LlamaTokenizer tokenizer) => new()
    {
        HiddenSize = Hidden, IntermediateSize = Intermediate, NumHiddenLayers = Layers, NumAttentionHeads = Heads,
        NumKeyValueHeads = KvHeads, HeadDim = HeadDim > 0 ? HeadDim : Hidden / Heads, VocabSize = tokenizer.VocabSize, RmsNormEps = 1e-5, RopeTheta = 10000,
        MaxPositionEmbeddings = 2048, TieWordEmbeddings = true,
        BosTokenId = tokenizer.TokenToId(Llama3ChatFormat.BeginOfTextToken)!.Value,
        EosTokenIds = [tokenizer.TokenToId(Llama3ChatFormat.EndOfTextToken)!.Value, tokenizer.TokenToId(Llama3ChatFormat.EotToken)!.Value],
    };

    /// <summary>Trains one phase and saves its checkpoint into <paramref name="outFolder"/>; returns the wall time.</summary>
    public TimeSpan TrainPhase(KvLinkTrainer trainer, TrainingMixture mixture, int steps, string outFolder, Func<int, string>? probe = null,
        CancellationToken cancellationToken = default) =>
        TrainPhase(trainer, [(mixture, steps)], outFolder, probe, cancellationToken);

    /// <summary>
    /// Trains through <paramref name="stages"/> (each until its step), checkpointing into <paramref name="outFolder"/> every
    /// <see cref="CheckpointMinutes"/> and at the end; a step is never split, so a rerun that resumes from the folder
    /// continues exactly. Logs wall time, tokens/s (last 25 steps and the whole run) and the load average. When
    /// <paramref name="cancellationToken"/> is signalled (Ctrl+C, SIGTERM), the phase checkpoints at the next step boundary and
    /// throws <see cref="OperationCanceledException"/>, so stopping a run never loses more than the step in flight.
    /// </summary>
    public TimeSpan TrainPhase(KvLinkTrainer trainer, IReadOnlyList<(TrainingMixture Mixture, int UntilStep)> stages, string outFolder, Func<int, string>? probe = null,
        CancellationToken cancellationToken = default)
    {
        const int Chunk = 25;
        var clock = Stopwatch.StartNew();
        var sinceSave = Stopwatch.StartNew();
        int total = stages[^1].UntilStep, startStep = trainer.Step;
        long tokensBefore = 0, tokens = 0; // before the current Train call, and in all
        var progress = new SynchronousProgress<TrainingProgress>(p =>
        {
            tokens = tokensBefore + p.Tokens;
            if (p.Step % Chunk != 0 && p.Step != total) return;
            double perStep = clock.Elapsed.TotalSeconds / Math.Max(1, p.Step - startStep);
            Log($"step {p.Step}/{total} loss {p.Loss:F3} lr {p.LearningRate:E1} |g| {p.GradientNorm:F2} {p.TokensPerSecond:F0} tok/s " +
                $"(run {tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds):F0}) wall {clock.Elapsed:hh\\:mm\\:ss} eta {TimeSpan.FromSeconds(perStep * (total - p.Step)):hh\\:mm\\:ss} load {LoadAverage()}");
            if (probe is not null && (p.Step % 250 == 0 || p.Step == total)) Log(probe(p.Step));
        });
        foreach (var (mixture, steps) in stages)
            while (trainer.Step < steps)
            {
                tokensBefore = tokens;
                try { trainer.Train(mixture, Math.Min(steps, (trainer.Step / Chunk + 1) * Chunk), progress, cancellationToken); }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested) { }
                bool stop = cancellationToken.IsCancellationRequested;
                if (!stop && sinceSave.Elapsed.TotalMinutes < CheckpointMinutes && trainer.Step < total) continue;
                trainer.SaveCheckpoint(outFolder);
                Log($"checkpoint at step {trainer.Step} in {outFolder}{(stop ? "; stopped, the same command resumes from here" : "")}");
                sinceSave.Restart();
                cancellationToken.ThrowIfCancellationRequested();
            }
        if (trainer.Step >= total && !File.Exists(Path.Combine(outFolder, KvLinkTrainer.StateFileName))) trainer.SaveCheckpoint(outFolder);
        return clock.Elapsed;
    }

    /// <summary>
    /// The trainer of a phase: resumed from <paramref name="work"/> when a checkpoint is there (its saved options, so a rerun
    /// continues exactly), otherwise made by <paramref name="start"/>.
    /// </summary>
    public static KvLinkTrainer ResumeOrStart(string work, Func<KvLinkTrainer> start)
    {
        if (!File.Exists(Path.Combine(work, KvLinkTrainer.StateFileName))) return start();
        var trainer = KvLinkTrainer.Resume(work);
        Log($"resumed {work} at step {trainer.Step}");
        return trainer;
    }
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the caller's thread (Progress&lt;T&gt; would post to the thread pool).</summary>
internal sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
