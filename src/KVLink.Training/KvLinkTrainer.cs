using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using KVLink.Core.Model;
using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace KVLink.Training;

/// <summary>
/// Fine-tunes every parameter of a Llama model for KVLink: AdamW (decoupled weight decay, none by default),
/// linear warm-up then cosine decay, gradient-norm clipping, Float32 or BFloat16 compute. The examples of a step go
/// through in padded micro-batches (several examples per forward/backward, each under its own mask), gradients
/// accumulating over them; the loss is the mean cross-entropy over all the step's target tokens.
/// Checkpoints are Hugging Face folders plus the optimizer and trainer state, so training resumes exactly.
/// </summary>
/// <remarks>
/// In BFloat16 the parameters and AdamW's moments are bf16 (no fp32 master copy). Not thread-safe: use one thread
/// (TorchSharp dispose scopes are thread-local).
/// </remarks>
public sealed class KvLinkTrainer : IDisposable
{
    /// <summary>The trainer-state file of a checkpoint (step, data generator state, options).</summary>
    public const string StateFileName = "trainer_state.json";

    /// <summary>The optimizer-state file of a checkpoint (AdamW moments and step counts, TorchSharp format).</summary>
    public const string OptimizerFileName = "optimizer_state.bin";

    /// <summary>Tokenizer files copied into a checkpoint when present in <see cref="TokenizerFolder"/>.</summary>
    public static IReadOnlyList<string> TokenizerFiles { get; } =
        ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "generation_config.json"];

    private readonly Parameter[] _parameters;
    private readonly TorchSharp.Modules.AdamW _optimizer;
    private bool _disposed;

    /// <summary>Creates a trainer for <paramref name="model"/>, whose parameters are made trainable.</summary>
    /// <param name="model">The model; its dtype must be <see cref="KvLinkTrainingOptions.ComputeType"/>.</param>
    /// <param name="options">Hyper-parameters.</param>
    /// <param name="tokenizerFolder">A folder whose tokenizer files checkpoints copy (usually the base checkpoint's).</param>
    internal KvLinkTrainer(LlamaForCausalLM model, KvLinkTrainingOptions options, string? tokenizerFolder = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (model.DType != options.ComputeType)
            throw new ArgumentException($"The model is {model.DType} but the options ask for {options.ComputeType} compute; load the model in that dtype.", nameof(model));
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        Model = model;
        Options = options;
        TokenizerFolder = tokenizerFolder;
        Random = new TrainingRandom(options.Seed);
        torch.manual_seed((long)options.Seed);
        // Tied embeddings register one parameter under two names: update it once.
        _parameters = [.. model.parameters().Distinct(ReferenceEqualityComparer.Instance).Cast<Parameter>()
            .GroupBy(p => p.Handle).Select(g => g.First())];
        foreach (var p in _parameters) p.requires_grad_(true);
        _optimizer = optim.AdamW(_parameters, options.LearningRate, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay);
    }

    /// <summary>The model being trained.</summary>
    internal LlamaForCausalLM Model { get; }

    /// <summary>Hyper-parameters.</summary>
    public KvLinkTrainingOptions Options { get; }

    /// <summary>Folder whose tokenizer files checkpoints copy, or null.</summary>
    public string? TokenizerFolder { get; }

    /// <summary>Optimizer steps completed.</summary>
    public int Step { get; private set; }

    /// <summary>The generator that draws the data mixture; saved with checkpoints.</summary>
    public TrainingRandom Random { get; }

    /// <summary>
    /// The trainer before batching, kept as the benchmark's baseline: one forward/backward per example with logits for
    /// every position (<see cref="TrainingLoss.Sum(LlamaForCausalLM, TrainingExample)"/>), micro-batch options ignored.
    /// </summary>
    internal bool PerExampleBaseline { get; init; }

    /// <summary>The trainable parameters (each once, even when tied).</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>
    /// One optimizer step over <paramref name="examples"/>: a forward/backward per micro-batch
    /// (<see cref="KvLinkTrainingOptions.MicroBatchSize"/>, <see cref="KvLinkTrainingOptions.MicroBatchTokens"/>; examples
    /// of similar length together, gradients accumulate), loss = summed cross-entropy / all target tokens of the step,
    /// clip, AdamW update at the scheduled learning rate. The loss does not depend on the micro-batch size: padding
    /// changes no example's numbers, so a step equals one pass per example up to float rounding.
    /// </summary>
    /// <returns>The step's mean loss per target token, its learning rate and its gradient norm before clipping.</returns>
    public (double Loss, double LearningRate, double GradientNorm) TrainStep(IReadOnlyList<TrainingExample> examples)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(examples);
        if (examples.Count == 0) throw new ArgumentException("A step needs at least one example.", nameof(examples));
        int targets = examples.Sum(e => e.TargetCount);
        if (targets == 0) throw new ArgumentException("The examples have no target tokens.", nameof(examples));
        // Grad mode is per thread and a caller's thread may have left it off (a no_grad scope that crossed an await):
        // a training step always needs it on.
        using var grad = torch.enable_grad();

        double lr = LearningRateSchedule.At(Step, Options);
        foreach (var group in _optimizer.ParamGroups) group.LearningRate = lr;
        _optimizer.zero_grad();
        double loss = 0;
        var withTargets = examples.Where(e => e.TargetCount > 0).ToList();
        var plan = PerExampleBaseline ? [.. withTargets.Select(e => new[] { e })] : TrainingBatch.Plan(withTargets, Options.MicroBatchSize, Options.MicroBatchTokens);
        foreach (var micro in plan)
        {
            using var scope = NewDisposeScope();
            var part = (PerExampleBaseline ? TrainingLoss.Sum(Model, micro[0]) : new TrainingBatch(micro).LossSum(Model)) / targets;
            part.backward();
            loss += part.item<float>();
        }
        double norm = ClipGradients(Options.MaxGradNorm > 0 ? Options.MaxGradNorm : double.PositiveInfinity);
        using (NewDisposeScope()) _optimizer.step();
        Step++;
        return (loss, lr, norm);
    }

    /// <summary>
    /// Trains until <see cref="Step"/> reaches <paramref name="untilStep"/>, drawing <see cref="KvLinkTrainingOptions.ExamplesPerStep"/>
    /// examples per step from <paramref name="mixture"/> with <see cref="Random"/>, reporting after every step.
    /// Cancellation is checked between steps (the trainer stays consistent, ready to save).
    /// </summary>
    public void Train(TrainingMixture mixture, int untilStep, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(mixture);
        var clock = Stopwatch.StartNew();
        int startStep = Step;
        long tokens = 0;
        while (Step < untilStep)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var batch = new List<TrainingExample>(Options.ExamplesPerStep);
            for (int i = 0; i < Options.ExamplesPerStep; i++) batch.Add(mixture.Next(Random));
            var (loss, lr, norm) = TrainStep(batch);
            tokens += batch.Sum(e => (long)e.Length);
            if (progress is null) continue;
            var elapsed = clock.Elapsed;
            int done = Step - startStep;
            var remaining = TimeSpan.FromTicks(elapsed.Ticks / done * (untilStep - Step));
            progress.Report(new TrainingProgress(Step, untilStep, loss, lr, norm, tokens / Math.Max(1e-9, elapsed.TotalSeconds), elapsed, remaining, tokens));
        }
    }

    /// <summary>
    /// Writes a resumable checkpoint: the model in Hugging Face layout (config.json, model.safetensors), the tokenizer
    /// files of <see cref="TokenizerFolder"/>, the optimizer state and <see cref="StateFileName"/>. An existing state file
    /// is deleted first and the new one written last (each file atomically), so an interrupted save leaves a folder
    /// that <see cref="Resume"/> refuses rather than one that mixes two steps.
    /// </summary>
    /// <remarks>
    /// The saved generator state is the data mixture's (<see cref="Random"/>); the forward pass has no dropout, so
    /// nothing else is random and resuming reproduces an uninterrupted run exactly.
    /// </remarks>
    public void SaveCheckpoint(string folder)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentException.ThrowIfNullOrEmpty(folder);
        Directory.CreateDirectory(folder);
        string statePath = Path.Combine(folder, StateFileName);
        if (File.Exists(statePath)) File.Delete(statePath);
        LlamaCheckpoint.Save(Model, folder);
        if (TokenizerFolder is not null && Path.GetFullPath(TokenizerFolder) != Path.GetFullPath(folder))
            foreach (var name in TokenizerFiles)
            {
                string source = Path.Combine(TokenizerFolder, name);
                if (File.Exists(source)) File.Copy(source, Path.Combine(folder, name), overwrite: true);
            }
        string optimizerPath = Path.Combine(folder, OptimizerFileName);
        string optimizerTemp = optimizerPath + ".tmp";
        _optimizer.save_state_dict(optimizerTemp);
        File.Move(optimizerTemp, optimizerPath, overwrite: true);

        var state = new JsonObject
        {
            ["format"] = "kvlink-trainer-v1",
            ["step"] = Step,
            ["random_state"] = Random.State.ToString(CultureInfo.InvariantCulture),
            ["options"] = JsonSerializer.SerializeToNode(Options),
        };
        string temp = statePath + ".tmp";
        File.WriteAllText(temp, state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(temp, statePath, overwrite: true);
    }

    /// <summary>
    /// Starts fine-tuning from a Hugging Face checkpoint folder (loaded in <paramref name="options"/>' compute dtype);
    /// its tokenizer files are copied into every checkpoint.
    /// </summary>
    public static KvLinkTrainer FromPretrained(string folder, KvLinkTrainingOptions options, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var model = LlamaCheckpoint.Load(folder, options.ComputeType, device);
        try { return new KvLinkTrainer(model, options, folder); }
        catch { model.Dispose(); throw; }
    }

    /// <summary>
    /// Resumes from a folder written by <see cref="SaveCheckpoint"/>: weights, optimizer state, step and data generator.
    /// The saved options are used unless <paramref name="options"/> is given.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has no trainer state or optimizer state (not a complete checkpoint).</exception>
    public static KvLinkTrainer Resume(string folder, KvLinkTrainingOptions? options = null, Device? device = null)
    {
        string statePath = Path.Combine(folder, StateFileName);
        if (!File.Exists(statePath)) throw new FileNotFoundException($"'{folder}' is not a complete training checkpoint: it has no {StateFileName}.", statePath);
        string optimizerPath = Path.Combine(folder, OptimizerFileName);
        if (!File.Exists(optimizerPath)) throw new FileNotFoundException($"'{folder}' is not a complete training checkpoint: it has no {OptimizerFileName}.", optimizerPath);
        JsonNode state;
        try
        {
            state = JsonNode.Parse(File.ReadAllText(statePath)) ?? throw new InvalidDataException("empty");
            options ??= state["options"].Deserialize<KvLinkTrainingOptions>() ?? throw new InvalidDataException("no options");
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"'{statePath}' is not a valid trainer state: {e.Message}", e);
        }
        var model = LlamaCheckpoint.Load(folder, options.ComputeType, device);
        try
        {
            var trainer = new KvLinkTrainer(model, options, folder)
            {
                Step = (int)state["step"]!,
            };
            trainer.Random.State = ulong.Parse((string)state["random_state"]!, CultureInfo.InvariantCulture);
            trainer._optimizer.load_state_dict(optimizerPath);
            return trainer;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Disposes the optimizer (not the model).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _optimizer.Dispose();
    }

    private double ClipGradients(double maxNorm)
    {
        using var scope = NewDisposeScope();
        var withGrad = _parameters.Where(p => p.grad is not null).ToArray();
        if (withGrad.Length == 0) return 0;
        return nn.utils.clip_grad_norm_(withGrad, maxNorm);
    }
}
