using KVLink.TestSupport;
using KVLink.Core.Prompting;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Training;

/// <summary>
/// The shared checkpoint fixture on a tinier synthetic checkpoint (byte-level tokenizer with Llama-3 specials),
/// plus the training tests' data and options. Each test trains a model of its own (<see cref="CheckpointFixture.LoadModel"/>).
/// </summary>
public sealed class TrainingFixture() : CheckpointFixture(SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 2, heads: 2, kvHeads: 1, maxPositions: 1024), seed: 5, "Use the docs.")
{
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
}
