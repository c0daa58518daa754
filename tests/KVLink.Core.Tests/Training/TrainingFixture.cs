using KVLink.TestSupport;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Training;

/// <summary>A tiny synthetic checkpoint (byte-level tokenizer with Llama-3 specials) and helpers for training tests.</summary>
public sealed class TrainingFixture : IDisposable
{
    public TrainingFixture()
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        Folder = Path.Combine(Path.GetTempPath(), "kvlink-tests", "train-" + Guid.NewGuid().ToString("N"));
        SyntheticCheckpoint.Write(Folder, SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 2, heads: 2, kvHeads: 1, maxPositions: 1024), seed: 5);
        Tokenizer = LlamaTokenizer.FromCheckpointFolder(Folder);
        Format = KvLinkLlama3Format.FromTokenizer(Tokenizer, "Use the docs.");
    }

    public string Folder { get; }
    public LlamaTokenizer Tokenizer { get; }
    public KvLinkLlama3Format Format { get; }

    internal LlamaForCausalLM LoadModel() => LlamaCheckpoint.Load(Folder, ScalarType.Float32);

    public TrainingExampleBuilder Builder(int linkTokens = 2) => new(Tokenizer, Format, linkTokens, maxLength: 1024);

    public static KvLinkTrainingOptions Options => new()
    {
        LearningRate = 2e-3, WarmupSteps = 2, TotalSteps = 20, ComputeType = ScalarType.Float32, ExamplesPerStep = 2,
        LinkTokens = 2, Seed = 7,
    };

    public static IReadOnlyList<QaSample> Qa =>
    [
        new([new KvLinkDocument("Zorb lives in Quell.", "Zorb"), new KvLinkDocument("Quell is blue.", "Quell")], "Where does Zorb live?", "Quell"),
        new([new KvLinkDocument("Mip eats figs.", "Mip"), new KvLinkDocument("Figs are sweet.", "Figs"), new KvLinkDocument("Tor is tall.", "Tor")], "What does Mip eat?", "figs"),
        new([new KvLinkDocument("Ka is 7.", "Ka")], "What is Ka?", "7"),
    ];

    public static IReadOnlyList<TextSample> Text => [new("The sea is wide and deep."), new("Stones sit still.")];

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
