using KVLink.TestSupport;
using System.Diagnostics;
using KVLink.Core.Model;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// A model under test: config, random bf16-valued weights (in the run's compute dtype) built in memory once per run, and its tokenizer: on the 1B shape the
/// Llama-3-sized one (cl100k_base ranks with the 256 Llama 3 specials from 128000, vocabulary 128256, built as the tests
/// build it), so prompts cost the tokens a real deployment computes; "1b-bytes" and "small" use the byte-level one.
/// </summary>
internal sealed class BenchModel : IDisposable
{
    private BenchModel(string name, string description, LlamaConfig config, LlamaForCausalLM model, LlamaTokenizer tokenizer, TimeSpan buildTime)
        => (Name, Description, Config, Model, Tokenizer, BuildTime) = (name, description, config, model, tokenizer, buildTime);

    public string Name { get; }
    public string Description { get; }
    public LlamaConfig Config { get; }
    public LlamaForCausalLM Model { get; }
    public LlamaTokenizer Tokenizer { get; }
    public TimeSpan BuildTime { get; }
    /// <summary>The prompt format: the folder's (demo model: its short system text) or the published one.</summary>
    public KVLink.Core.Prompting.KvLinkLlama3Format Format { get; private init; } = null!;

    /// <summary>Bytes of keys plus values per token in the model dtype (all layers).</summary>
    public long CacheBytesPerToken() => 2L * Config.NumHiddenLayers * Config.NumKeyValueHeads * Config.HeadDim * (Model.DType == ScalarType.Float32 ? 4 : 2);

    /// <summary>Llama-3.2-1B's real shape (random weights): hidden 2048, 16 layers, 32 heads, 8 kv heads, head_dim 64, 8192 FFN, 128256 vocab, tied, llama3 RoPE.</summary>
    /// <param name="firstSpecial">Id of the first Llama 3 special token: 128000 with the Llama-3-sized tokenizer, 256 with the byte-level one.</param>
    public static LlamaConfig Llama32OneB(int firstSpecial = 128000) => new()
    {
        HiddenSize = 2048, IntermediateSize = 8192, NumHiddenLayers = 16, NumAttentionHeads = 32, NumKeyValueHeads = 8, HeadDim = 64,
        VocabSize = 128256, RmsNormEps = 1e-5, RopeTheta = 500000, RopeScaling = new Llama3RopeScaling(32, 1, 4, 8192),
        MaxPositionEmbeddings = 131072, TieWordEmbeddings = true, BosTokenId = firstSpecial, EosTokenIds = [firstSpecial + 1, firstSpecial + 9],
    };

    /// <summary>The Llama-3-sized tokenizer, exactly as the tests build it (Cl100kTestData).</summary>
    public static LlamaTokenizer Llama3Sized()
    {
        using var ranks = Cl100kTiktoken.Open();
        return LlamaTokenizer.FromTiktoken(ranks, Llama3SpecialTokens.Create(128000));
    }

    /// <summary>The small synthetic config (until the demo model lands): the quickstart's shape.</summary>
    public static LlamaConfig Small() => SyntheticCheckpoint.SmallConfig(hidden: 256, layers: 4, heads: 8, kvHeads: 4, maxPositions: 32768);

    /// <summary>
    /// Builds model <paramref name="name"/> in <paramref name="dtype"/> (the random weights are drawn in float32 and rounded to
    /// bf16 whatever the dtype, so a float32 and a bf16 run multiply the same numbers and write the same GGUF).
    /// </summary>
    public static BenchModel Create(string name, string tempFolder, ScalarType dtype = ScalarType.BFloat16)
    {
        var (config, description) = name switch
        {
            "small" => (Small(), "small synthetic (hidden 256, 4 layers, 8 heads, 4 kv heads, head_dim 32, vocab 512, tied, llama3 RoPE)"),
            "1b" => (Llama32OneB(), "Llama-3.2-1B shape (hidden 2048, 16 layers, 32 heads, 8 kv heads, head_dim 64, FFN 8192, vocab 128256, tied, llama3 RoPE), Llama-3-sized tokenizer (cl100k_base ranks + Llama 3 specials from 128000)"),
            "1b-bytes" => (Llama32OneB(256), "Llama-3.2-1B shape as above with the byte-level tokenizer (every byte a token: the earlier benchmark's prompts)"),
            "demo" => (null!, "the demo model (models/kvlink-demo: trained weights, hidden 128, 4 layers, 4 heads, 2 kv heads, head_dim 32, BPE vocab, 2048 positions)"),
            _ => throw new ArgumentException($"Unknown model '{name}' (small, 1b, 1b-bytes, demo)."),
        };
        if (name == "demo")
        {
            var timer = Stopwatch.StartNew();
            string folder = KVLink.Demo.DemoModel.FindFolder() ?? throw new DirectoryNotFoundException("models/kvlink-demo not found");
            var tok = LlamaTokenizer.FromCheckpointFolder(folder);
            var loaded = LlamaCheckpoint.Load(folder, dtype);
            return new BenchModel(name, description, loaded.Config, loaded, tok, timer.Elapsed) { Format = KVLink.Core.Prompting.PromptSettingsFile.FormatFor(folder, tok) };
        }
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(tempFolder);
        string tokenizerPath = Path.Combine(tempFolder, "tokenizer.json");
        SyntheticCheckpoint.WriteTokenizer(tokenizerPath);
        var tokenizer = name == "1b" ? Llama3Sized() : LlamaTokenizer.FromHuggingFaceJson(tokenizerPath);
        var model = new LlamaForCausalLM(config, dtype);
        SyntheticCheckpoint.Randomize(model, seed: 7);
        if (dtype != ScalarType.BFloat16)
            using (no_grad())
                foreach (var p in model.parameters())
                {
                    using var rounded = p.to(ScalarType.BFloat16);
                    p.copy_(rounded);
                }
        return new BenchModel(name, description, config, model, tokenizer, clock.Elapsed) { Format = KVLink.Core.Prompting.KvLinkLlama3Format.FromTokenizer(tokenizer) };
    }

    public void Dispose() => Model.Dispose();
}
