using System.CommandLine;
using System.Globalization;

namespace KVLink.Train;

/// <summary>
/// The command line of KVLink.Train: every command with its options, each checked when the line is parsed (counts
/// positive, rates in range, input files and folders present), so a bad value is an error with exit code 1 before any
/// corpus is built or model loaded. <see cref="BuildRootCommand"/> is what Program runs and what the tests parse.
/// </summary>
public static class TrainCli
{
    /// <summary>The root command with every command of the program.</summary>
    public static RootCommand BuildRootCommand()
    {
        var root = new RootCommand("KVLink.Train: makes the demo model, fine-tunes any Llama checkpoint with the KVLink recipe, and measures accuracy.\n" +
            "usage: dotnet run -c Release --project samples/KVLink.Train -- <command> [options]");
        var recipe = new DemoRecipe();

        root.Add(Cli.Command("demo", "retrain both demo models from scratch, then measure the accuracy table into docs/accuracy.md", Demo.RunAsync,
            Cli.Text("--out", "folder the models are written to (default models/ in the repository)"),
            Cli.Text("--work", "training work folder (default kvlink-demo-work in the temp folder)"),
            Cli.Int("--full-steps", $"steps of the full-attention phase (default {recipe.FullSteps})"),
            Cli.Int("--link-steps", $"steps of the KVLink phase (default {recipe.LinkSteps})"),
            Cli.Int("--batch", $"examples per step (default {recipe.ExamplesPerStep})"),
            Cli.Int("--micro-batch", $"examples per forward/backward, padded; gradients accumulate over a step's micro-batches (default {recipe.MicroBatchSize})"),
            Cli.Int("--questions", $"training questions of each kind in the corpus (default {recipe.TrainQuestionsPerKind}; the held-out split does not change)"),
            Cli.Real("--checkpoint-minutes", $"minutes between checkpoints into --work; a rerun with the same --work resumes exactly (default {recipe.CheckpointMinutes})"),
            Cli.Int("--hidden", $"hidden size (default {recipe.Hidden})"),
            Cli.Int("--layers", $"decoder layers (default {recipe.Layers})"),
            Cli.Int("--heads", $"attention heads (default {recipe.Heads})"),
            Cli.Int("--kv-heads", $"key/value heads (default {recipe.KvHeads})"),
            Cli.Int("--head-dim", "width of each attention head (default hidden / heads)"),
            Cli.Int("--intermediate", $"MLP width (default {recipe.Intermediate})"),
            Cli.Real("--lr", $"learning rate of the full-attention phase (default {recipe.FullLearningRate})"),
            Cli.Real("--link-lr", $"learning rate of the KVLink phase and the control (default {recipe.LinkLearningRate})"),
            Cli.Fraction("--easy", $"fraction of easy examples (default {recipe.EasyFraction})"),
            Cli.Int("--copy-steps", $"copy-task warm-up steps (default {recipe.CopySteps})", min: 0),
            Cli.Int("--follow-ups", $"follow-up questions per training sample (default {recipe.MaxFollowUps})", min: 0),
            Cli.Fraction("--drill", $"share of fact drills (shuffled restatements of a question's sentences) in the easy stage, half of it in the full stage (default 0: none; tried at 0.5, see docs/training.md)"),
            Cli.Flag("--doc-loss", "also train on document tokens"),
            Cli.Text("--dtype", "training dtype: auto (bfloat16 where the CPU has native bf16, else float32), float32 or bfloat16 (default auto)"),
            Cli.Flag("--bf16", "train in bfloat16 (same as --dtype bfloat16)"),
            Cli.Flag("--numbered", "the published numbered document header (Document [n]) instead of the slot-free one (a cache per slot)"),
            Cli.Flag("--no-eval", "skip the accuracy measurement after training"),
            Cli.Int("--per-kind", "questions of each kind in the accuracy measurement (default 500)"),
            Cli.Int("--max-new-tokens", "new tokens per answer in the accuracy measurement (default 24)")));

        root.Add(Cli.Command("train-bench", "trainer tokens/s on the demo shape and one step on the Llama-3.2-1B shape (time, peak RSS) at several micro-batch sizes, against the trainer before batching in the same run",
            TrainBenchCommand.RunAsync,
            Cli.IntList("--micro-batches", "micro-batch sizes on the demo shape, comma-separated, after the trainer before batching (default 1,8,16,32)"),
            Cli.Int("--batch", "examples per step on the demo shape (default 32)"),
            Cli.Int("--steps", "timed steps per size on the demo shape, after one warm-up step (default 4)"),
            Cli.IntList("--micro-batches-1b", "micro-batch sizes of the 1B-shape step; 0 = the trainer before batching (default 0,8)"),
            Cli.Int("--batch-1b", "examples in the 1B-shape step (default 8)"),
            Cli.Int("--layers-1b", "decoder layers of the 1B shape (default 16; 0 skips it)", min: 0),
            Cli.Text("--dtype", "auto (bfloat16 where the CPU has native bf16, else float32), float32 or bfloat16 (default auto)"),
            Cli.Text("--dtype-1b", "dtype of the 1B-shape step (default --dtype; float32 needs ~20 GiB, bfloat16 ~10 GiB)")));

        root.Add(Cli.Command("slot-free", "continue the KVLink phase of a numbered-header demo checkpoint with the slot-free header (resumable)", SlotFreeCommand.RunAsync,
            Cli.Folder("--from", $"numbered-header checkpoint (default models/{SlotFreeCommand.NumberedFolderName})"),
            Cli.Text("--out", "folder the slot-free model is written to (default models/kvlink-demo)"),
            Cli.Text("--work", "checkpoint folder; a rerun with the same folder resumes (default kvlink-demo-work/slot-free in the temp folder)"),
            Cli.Int("--steps", $"training steps (default {recipe.SlotFreeSteps})"),
            Cli.Real("--lr", $"peak learning rate (default {recipe.SlotFreeLearningRate})")));

        root.Add(Cli.Command("continue", "train a demo checkpoint further with the slot-free header: full attention or the KVLink mixture, more follow-ups per sample (resumable)",
            ContinueCommand.RunAsync,
            Cli.Folder("--from", "checkpoint to start from", required: true),
            Cli.Text("--work", "checkpoint folder; a rerun with the same folder resumes", required: true),
            Cli.Text("--out", "folder the model is exported to at the end (none by default)"),
            Cli.Int("--steps", "training steps (default 2000)"),
            Cli.Int("--warmup", "warm-up steps (default steps / 10, at most 50)", min: 0),
            Cli.Real("--lr", $"peak learning rate (default {recipe.LinkLearningRate})"),
            Cli.Fraction("--blocked", "share of blocked (KVLink) examples, K from {0, 1, 5} (default 0: full attention)"),
            Cli.Int("--follow-ups", $"follow-up questions per sample (default {recipe.MaxFollowUps})", min: 0),
            Cli.Int("--batch", $"examples per step (default {recipe.ExamplesPerStep})"),
            Cli.Int("--micro-batch", $"examples per forward/backward (default {recipe.MicroBatchSize})"),
            Cli.Int("--questions", $"training questions of each kind (default {recipe.TrainQuestionsPerKind})"),
            Cli.Int("--seed", $"trainer seed (default {recipe.Seed})"),
            Cli.Int("--data-seed", "corpus seed offset from the recipe's (default 2, a corpus the earlier phases never drew)", min: 0),
            Cli.Real("--checkpoint-minutes", $"minutes between checkpoints (default {recipe.CheckpointMinutes})")));

        root.Add(Cli.Command("slots", "accuracy of each slot policy (numbered Exact / Shared, slot-free) on the same shuffled held-out questions into docs/accuracy.md",
            SlotPolicyCommand.RunAsync,
            Cli.Folder("--models", "folder holding the demo models (default models/ in the repository)"),
            Cli.Int("--per-kind", "questions of each kind (default 500)"),
            Cli.Int("--links", "link tokens per document (default 5)", min: 0),
            Cli.Int("--max-new-tokens", "new tokens per answer (default 24)")));

        root.Add(Cli.Command("accuracy", "measure the accuracy table of the demo models into docs/accuracy.md",
            o => AccuracyCommand.RunAsync(o, o.Get("models") ?? Path.Combine(Demo.RepoRoot(), "models")),
            Cli.Folder("--models", "folder holding the demo models (default models/ in the repository)"),
            Cli.Int("--per-kind", "questions of each kind (default 500)"),
            Cli.Int("--max-new-tokens", "new tokens per answer (default 24)")));

        root.Add(Cli.Command("accuracy-int8", "accuracy of the demo model decoding with int8 weights vs full precision (printed)",
            o => AccuracyCommand.Int8Async(o, o.Get("models") ?? Path.Combine(Demo.RepoRoot(), "models")),
            Cli.Folder("--models", "folder holding the demo models (default models/ in the repository)"),
            Cli.Int("--per-kind", "questions of each kind (default 100)"),
            Cli.Int("--max-new-tokens", "new tokens per answer (default 24)")));

        root.Add(Cli.Command("compression", "accuracy / cache bytes / TTFT of compressed documents (self-information vs random drop, float32 vs int8) into docs/compression.md",
            CompressionCommand.RunAsync,
            Cli.Folder("--model", "checkpoint folder (default models/kvlink-demo)"),
            Cli.Int("--per-kind", "questions of each kind (default 250)"),
            Cli.Int("--links", "link tokens per document (default 5)", min: 0)));

        root.Add(Cli.Command("chat", "conversations on the demo model: system-message placement, 5-turn follow-ups with vs without the session cache, TTFT turn 5 vs 1, into docs/accuracy.md",
            ChatCommand.RunAsync,
            Cli.Folder("--model", "checkpoint folder (default models/kvlink-demo)"),
            Cli.Int("--per-kind", "held-out single questions of each kind for the system-message rows (default 100)"),
            Cli.Int("--conversations", "five-turn conversations (default 60)"),
            Cli.Int("--max-new-tokens", "new tokens per answer (default 24)")));

        root.Add(Cli.Command("control", "only the full-attention control phase of a `demo` work folder (the equal-budget baseline)",
            o => { Demo.RunControl(o); return Task.CompletedTask; },
            Cli.Folder("--work", "the `demo` work folder", required: true),
            Cli.Int("--link-steps", $"steps of the KVLink phase the control matches (default {recipe.LinkSteps})"),
            Cli.Text("--out", "folder the models are written to (default models/ in the repository)")));

        root.Add(Cli.Command("diag", "top predictions at every response token of a few held-out questions",
            o => { Diag.Run(o); return Task.CompletedTask; },
            Cli.Folder("--model", "checkpoint folder", required: true),
            Cli.Int("--n", "questions of each kind (default 3)"),
            Cli.Flag("--by-template", "teacher-forced accuracy of each answer entity, grouped by the words before it")));

        root.Add(Cli.Command("sanity", "does the trainer learn in-context copying (loss falls to ~3 when it does)",
            o => { Sanity.Run(o); return Task.CompletedTask; },
            Cli.Int("--steps", "training steps (default 300)"),
            Cli.Real("--lr", "learning rate (default 0.002)"),
            Cli.Int("--layers", "decoder layers (default 2)"),
            Cli.Int("--hidden", "hidden size (default 128)")));

        root.Add(Cli.Command("eval", "accuracy of any checkpoint (e.g. Shiyu-Lab/Llama1B-KVLink5) on synthetic, NQ- or HotpotQA-style JSONL",
            AccuracyCommand.EvalAsync,
            Cli.Folder("--model", "checkpoint folder", required: true),
            Cli.File("--data", "questions, one JSON object a line", required: true),
            Cli.IntList("--links", "link tokens per document to compare, comma-separated (default 0,1,5)"),
            Cli.Int("--limit", "at most this many questions (default all)"),
            Cli.Int("--max-new-tokens", "new tokens per answer (default 32)")));

        // No command: the usage, as before (exit 0).
        root.SetAction(r => new System.CommandLine.Help.HelpAction().Invoke(r));
        return root;
    }
}

/// <summary>Builders for the commands and their options; each option carries its own range or existence check.</summary>
internal static class Cli
{
    /// <summary>
    /// A command running <paramref name="run"/>. An input error found while it runs (a malformed file, a bad value in one)
    /// is printed as one line with exit code 1, not as a stack trace; anything else is a bug and keeps its trace.
    /// </summary>
    public static Command Command(string name, string description, Func<Options, Task> run, params Option[] options)
    {
        var command = new Command(name, description);
        foreach (var o in options) command.Add(o);
        command.SetAction(async (r, cancellationToken) =>
        {
            try
            {
                await run(new Options(r, cancellationToken));
                return 0;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Ctrl+C or SIGTERM: a training phase has saved its checkpoint first, so the same command resumes.
                await r.InvocationConfiguration.Error.WriteLineAsync($"{name}: stopped.");
                return 130;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException)
            {
                await r.InvocationConfiguration.Error.WriteLineAsync($"{name}: {e.Message}");
                return 1;
            }
        });
        return command;
    }

    public static Option<string> Text(string name, string description, bool required = false) =>
        new(name) { Description = description, Required = required, HelpName = required ? "value" : null };

    /// <summary>A folder that must exist when given.</summary>
    public static Option<string> Folder(string name, string description, bool required = false)
    {
        var option = new Option<string>(name) { Description = description, Required = required, HelpName = "folder" };
        return Check(option, value => value is not null && !Directory.Exists(value) ? $"{name}: the folder '{Path.GetFullPath(value)}' does not exist." : null);
    }

    /// <summary>A file that must exist when given.</summary>
    public static Option<string> File(string name, string description, bool required = false)
    {
        var option = new Option<string>(name) { Description = description, Required = required, HelpName = "file" };
        return Check(option, value => value is not null && !System.IO.File.Exists(value) ? $"{name}: the file '{Path.GetFullPath(value)}' does not exist." : null);
    }

    /// <summary>An integer of at least <paramref name="min"/> (counts and sizes: 1 unless zero means something).</summary>
    public static Option<int> Int(string name, string description, int min = 1)
    {
        var option = new Option<int>(name) { Description = description, HelpName = "N" };
        return Check(option, value => value < min ? $"{name} must be at least {min} (was {value})." : null);
    }

    /// <summary>A positive real number (learning rates).</summary>
    public static Option<double> Real(string name, string description)
    {
        var option = new Option<double>(name) { Description = description, HelpName = "X" };
        return Check(option, value => !(value > 0) || double.IsInfinity(value) ? $"{name} must be a positive number (was {value.ToString(CultureInfo.InvariantCulture)})." : null);
    }

    /// <summary>A fraction in [0, 1].</summary>
    public static Option<double> Fraction(string name, string description)
    {
        var option = new Option<double>(name) { Description = description, HelpName = "X" };
        return Check(option, value => !(value >= 0 && value <= 1) ? $"{name} must be between 0 and 1 (was {value.ToString(CultureInfo.InvariantCulture)})." : null);
    }

    /// <summary>
    /// Adds a check of the option's value: <paramref name="problem"/> returns the error, or null when the value is fine. A value
    /// that did not convert (<c>--lr abc</c>) already has its own parse error, so the check is skipped for it.
    /// </summary>
    private static Option<T> Check<T>(Option<T> option, Func<T, string?> problem)
    {
        option.Validators.Add(r =>
        {
            T value;
            try { value = r.GetValueOrDefault<T>(); }
            catch (InvalidOperationException) { return; }
            if (problem(value) is { } error) r.AddError(error);
        });
        return option;
    }

    public static Option<bool> Flag(string name, string description) => new(name) { Description = description, Arity = ArgumentArity.Zero };

    /// <summary>A comma-separated list of non-negative integers ("0,1,5"); a malformed or negative item is a parse error naming it.</summary>
    public static Option<int[]> IntList(string name, string description) => new(name)
    {
        Description = description,
        HelpName = "N,N,...",
        CustomParser = r =>
        {
            var items = r.Tokens.SelectMany(t => t.Value.Split(',', StringSplitOptions.RemoveEmptyEntries)).ToList();
            var values = new int[items.Count];
            for (int i = 0; i < items.Count; i++)
                if (!int.TryParse(items[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] < 0)
                {
                    r.AddError($"{name}: '{items[i]}' is not a non-negative integer (expected a comma-separated list such as 0,1,5).");
                    return [];
                }
            return values;
        },
    };
}
