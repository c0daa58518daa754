using KVLink.TestSupport;
using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Hosting;

/// <summary>One small synthetic checkpoint per test class, with helpers for DI options and direct engines.</summary>
public sealed class HostingFixture : IDisposable
{
    public HostingFixture()
    {
        Folder = Path.Combine(Path.GetTempPath(), "kvlink-hosting-tests", Guid.NewGuid().ToString("N"));
        SyntheticCheckpoint.Write(Folder, SyntheticCheckpoint.SmallConfig(hidden: 64, layers: 2, heads: 4, kvHeads: 2, maxPositions: 2048), seed: 5);
        Tokenizer = LlamaTokenizer.FromCheckpointFolder(Folder);
        Format = KvLinkLlama3Format.FromTokenizer(Tokenizer, "Answer from the documents.");
    }

    public string Folder { get; }
    public LlamaTokenizer Tokenizer { get; }
    public KvLinkLlama3Format Format { get; }

    /// <summary>Small, exact and fast settings for engines the container loads from <see cref="Folder"/>.</summary>
    public void Configure(KvLinkOptions o)
    {
        o.ModelPath = Folder;
        o.DType = ComputeDType.Float32;
        o.LinkTokens = 1;
        o.PromptFormat = Format;
        o.Generation = new KVLink.Core.Generation.GenerationOptions { MaxNewTokens = 12 };
    }

    /// <summary>An engine loaded from the checkpoint, with diagnostics.</summary>
    public Task<KvLinkEngine> LoadEngineAsync(IKvCacheStore? store = null, KvLinkDiagnostics? diagnostics = null)
    {
        var o = new KvLinkOptions();
        Configure(o);
        return KvLinkEngine.LoadAsync(Folder, o, store, diagnostics);
    }

    public static KvLinkDocument Doc(int i, int words = 12) =>
        new(string.Join(' ', Enumerable.Range(0, words).Select(w => $"v{(i * 17 + w * 5) % 89}")), $"Doc {i}");

    public void Dispose()
    {
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
