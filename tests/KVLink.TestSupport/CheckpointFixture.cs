using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// One small synthetic checkpoint written per test class (an xunit class fixture), with its tokenizer and prompt
/// format, and helpers to open engines on it: directly on a model shared by the class, or loaded from the folder as
/// a host would. Public because xunit class fixtures of public test classes must be; the model and the checkpoint
/// configuration are KVLink.Core internals, so the members that name them are internal.
/// </summary>
public class CheckpointFixture : IDisposable
{
    private readonly Lazy<LlamaForCausalLM> _model;

    /// <summary>The engine and hosting tests' checkpoint: 2 layers of 64, 4 heads over 2 KV heads, 2,048 positions.</summary>
    public CheckpointFixture()
        : this(SyntheticCheckpoint.SmallConfig(hidden: 64, layers: 2, heads: 4, kvHeads: 2, maxPositions: 2048), seed: 11, "Answer from the documents.")
    {
    }

    /// <summary>Another checkpoint (the training tests use a smaller one) with another system text.</summary>
    internal CheckpointFixture(LlamaConfig config, int seed, string systemText)
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        Folder = Path.Combine(Path.GetTempPath(), "kvlink-tests", Guid.NewGuid().ToString("N"));
        SyntheticCheckpoint.Write(Folder, config, seed);
        Tokenizer = LlamaTokenizer.FromCheckpointFolder(Folder);
        Format = KvLinkLlama3Format.FromTokenizer(Tokenizer, systemText);
        _model = new(() => LoadModel(), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public string Folder { get; }
    public LlamaTokenizer Tokenizer { get; }

    /// <summary>A short system text keeps prompts small; the layout is otherwise the published one.</summary>
    public KvLinkLlama3Format Format { get; }

    /// <summary>The model shared by this class's direct engines (loaded on first use, disposed with the fixture).</summary>
    internal LlamaForCausalLM Model => _model.Value;

    /// <summary>A model of its own (for tests that train or otherwise change it); the caller disposes it.</summary>
    internal LlamaForCausalLM LoadModel() => LlamaCheckpoint.Load(Folder, ScalarType.Float32);

    /// <summary>
    /// An engine on the shared <see cref="Model"/>, exact (float32) and with the short format (numbered header) or
    /// <paramref name="format"/>; the slot policy is the engine's default unless <paramref name="slotPolicy"/> is given.
    /// </summary>
    public KvLinkEngine Engine(int linkTokens = 1, ContextMode mode = ContextMode.KvLink, IKvCacheStore? store = null,
        SlotPolicy? slotPolicy = null, PromptFormat? format = null)
    {
        var options = new KvLinkOptions { LinkTokens = linkTokens, Mode = mode, PromptFormat = format ?? Format, DType = ComputeDType.Float32 };
        if (slotPolicy is { } policy) options.SlotPolicy = policy;
        return new(Model, Tokenizer, options, store);
    }

    /// <summary>
    /// An engine that keeps conversations, as the session tests use it: on <paramref name="model"/> (default: the shared
    /// <see cref="Model"/>), exact (float32), one link token, the short format, <paramref name="sessionBytes"/> of kept
    /// sessions (0: none), persisted to <paramref name="store"/> when <paramref name="persist"/>.
    /// </summary>
    internal KvLinkEngine SessionEngine(long sessionBytes, IKvCacheStore? store = null, bool persist = false, int precomputeSlots = 1,
        bool int8 = false, LlamaForCausalLM? model = null) =>
        new(model ?? Model, Tokenizer, new KvLinkOptions
        {
            LinkTokens = 1, PromptFormat = Format, DType = ComputeDType.Float32, SessionCacheBytes = sessionBytes, PersistSessions = persist,
            PrecomputeSlots = precomputeSlots, DecodeWithInt8Weights = int8,
        }, store);

    /// <summary>Documents 1..<paramref name="count"/> (<see cref="Doc"/>, 20 words each), precomputed at once; their ids in order.</summary>
    public static async Task<string[]> PrecomputeDocs(KvLinkEngine engine, int count) =>
        [.. await Task.WhenAll(Enumerable.Range(1, count).Select(i => engine.PrecomputeAsync(Doc(i, words: 20))))];

    /// <summary>Small, exact and fast settings for engines a container loads from <see cref="Folder"/>.</summary>
    public void Configure(KvLinkOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        o.ModelPath = Folder;
        o.DType = ComputeDType.Float32;
        o.LinkTokens = 1;
        o.PromptFormat = Format;
        o.Generation = new GenerationOptions { MaxNewTokens = 12 };
    }

    /// <summary>An engine loaded from the checkpoint folder (a model of its own), with <see cref="Configure"/>'s settings.</summary>
    public Task<KvLinkEngine> LoadEngineAsync(IKvCacheStore? store = null, KvLinkDiagnostics? diagnostics = null)
    {
        var o = new KvLinkOptions();
        Configure(o);
        return KvLinkEngine.LoadAsync(Folder, o, store, diagnostics);
    }

    /// <summary>Document <paramref name="i"/>: <paramref name="words"/> words of a small vocabulary, titled "Title i".</summary>
    public static KvLinkDocument Doc(int i, int words = 12) =>
        new(string.Join(' ', Enumerable.Range(0, words).Select(w => $"w{(i * 31 + w * 7) % 97}")), $"Title {i}");

    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (!disposing) return;
        if (_model.IsValueCreated) _model.Value.Dispose();
        try { Directory.Delete(Folder, recursive: true); } catch (IOException) { }
    }
}
