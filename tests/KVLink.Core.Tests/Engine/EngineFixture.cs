using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Engine;

/// <summary>A small synthetic checkpoint written once per test class, plus helpers to open engines on it.</summary>
public sealed class EngineFixture : IDisposable
{
    public EngineFixture()
    {
        Folder = Path.Combine(Path.GetTempPath(), "kvlink-tests", Guid.NewGuid().ToString("N"));
        SyntheticCheckpoint.Write(Folder, SyntheticCheckpoint.SmallConfig(hidden: 64, layers: 2, heads: 4, kvHeads: 2, maxPositions: 2048), seed: 11);
        Tokenizer = LlamaTokenizer.FromCheckpointFolder(Folder);
        Model = LlamaCheckpoint.Load(Folder, ScalarType.Float32);
    }

    public string Folder { get; }
    public LlamaTokenizer Tokenizer { get; }
    internal LlamaForCausalLM Model { get; }

    /// <summary>A short system text keeps prompts small; the layout is otherwise the published one.</summary>
    public KvLinkLlama3Format Format => KvLinkLlama3Format.FromTokenizer(Tokenizer, "Answer from the documents.");

    public KvLinkEngine Engine(int linkTokens = 1, ContextMode mode = ContextMode.KvLink, KVLink.Core.Caching.IKvCacheStore? store = null) =>
        new(Model, Tokenizer, new KvLinkOptions { LinkTokens = linkTokens, Mode = mode, PromptFormat = Format, DType = ComputeDType.Float32 }, store);

    public static KvLinkDocument Doc(int i, int words) =>
        new(string.Join(' ', Enumerable.Range(0, words).Select(w => $"w{(i * 31 + w * 7) % 97}")), $"Title {i}");

    public void Dispose()
    {
        Model.Dispose();
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
