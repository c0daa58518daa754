using KVLink.Core.Model;
using KVLink.Core.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// Writes small (or real-shaped) Llama checkpoints with seeded random weights in exact Hugging Face
/// layout — config.json, model.safetensors, and a byte-level tokenizer.json whose 256 byte tokens are
/// followed by the 256 Llama-3 special tokens (so link tokens and memory markers exist, as in Llama 3).
/// For tests, samples and benchmarks: no download needed. Random weights give meaningless text.
/// </summary>
internal static class SyntheticCheckpoint
{
    /// <summary>Vocabulary of the synthetic tokenizer: 256 bytes + 256 Llama-3 special tokens.</summary>
    public const int VocabSize = 256 + Llama3SpecialTokens.Count;

    /// <summary>A small GQA config with llama3 RoPE scaling, sized for the synthetic tokenizer.</summary>
    public static LlamaConfig SmallConfig(int hidden = 128, int layers = 2, int heads = 4, int kvHeads = 2, int maxPositions = 4096) => new()
    {
        HiddenSize = hidden, IntermediateSize = hidden * 2, NumHiddenLayers = layers, NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads, HeadDim = hidden / heads, VocabSize = VocabSize, RmsNormEps = 1e-5, RopeTheta = 500000,
        RopeScaling = new Llama3RopeScaling(32, 1, 4, 8192), MaxPositionEmbeddings = maxPositions, TieWordEmbeddings = true,
        BosTokenId = 256, EosTokenIds = [256 + 1, 256 + 9],
    };

    /// <summary>
    /// Writes a checkpoint for <paramref name="config"/> (its vocabulary must be at least <see cref="VocabSize"/>)
    /// with weights drawn from <paramref name="seed"/>, stored as <paramref name="dtype"/>.
    /// </summary>
    public static void Write(string folder, LlamaConfig config, int seed = 0, ScalarType dtype = ScalarType.Float32)
    {
        if (config.VocabSize < VocabSize) throw new ArgumentException($"The synthetic tokenizer needs a vocabulary of at least {VocabSize}.", nameof(config));
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        Directory.CreateDirectory(folder);
        using (var model = new LlamaForCausalLM(config, dtype))
        {
            Randomize(model, seed);
            LlamaCheckpoint.Save(model, folder);
        }
        WriteTokenizer(Path.Combine(folder, "tokenizer.json"));
    }

    /// <summary>Fills every parameter: projections ~ N(0, 1/fan_in), embeddings ~ N(0, 1), norms ~ 1 + N(0, 0.01).</summary>
    public static void Randomize(LlamaForCausalLM model, int seed)
    {
        using var _ = no_grad();
        using var generator = new Generator((ulong)seed);
        foreach (var (name, p) in model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal))
        {
            using var scope = NewDisposeScope();
            var r = randn(p.shape, ScalarType.Float32, generator: generator);
            var value = name.EndsWith("norm.weight", StringComparison.Ordinal) ? 1 + 0.1 * r
                : name.Contains("embed_tokens", StringComparison.Ordinal) ? r
                : r / Math.Sqrt(p.shape[^1]);
            p.copy_(value.to(p.dtype));
        }
    }

    /// <summary>Writes the byte-level tokenizer.json: ids 0-255 are bytes, 256-511 the Llama-3 special tokens.</summary>
    public static void WriteTokenizer(string path)
    {
        var vocab = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToList();
        HuggingFaceTokenizerJson.Write(path, vocab, [], Llama3SpecialTokens.Create(firstId: 256));
    }
}
