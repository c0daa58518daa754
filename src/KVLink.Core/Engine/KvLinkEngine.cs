using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using KVLink.Core.Caching;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// KVLink retrieval-augmented generation over a Llama model: <see cref="PrecomputeAsync"/> encodes each
/// document once and stores its KV cache; <see cref="GenerateAsync"/> loads the caches of the retrieved
/// documents, re-rotates their keys to their global positions, runs the link tokens and the question in
/// one pass, and generates. Thread safe: model work runs on one dedicated thread, requests queue.
/// </summary>
public sealed partial class KvLinkEngine : IAsyncDisposable
{
    private readonly KvLinkOptions _options;
    private readonly ModelWorker _worker;
    private readonly ConcurrentDictionary<string, KvLinkDocument> _documents = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<KvCacheKey, Lazy<Task<DocumentKvCache>>> _inflight = new();
    private volatile bool _disposed;
    private PrefixCache? _prefix; // touched only on the model thread

    private sealed record PrefixCache(int[] Tokens, Tensor Keys, Tensor Values);

    /// <summary>Creates an engine over a loaded model and tokenizer.</summary>
    /// <exception cref="ArgumentException">Invalid options (the message names the setting).</exception>
    public KvLinkEngine(LlamaForCausalLM model, LlamaTokenizer tokenizer, KvLinkOptions? options = null, IKvCacheStore? store = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _options = options ?? new KvLinkOptions();
        _options.Validate();
        Model = model;
        Tokenizer = tokenizer;
        Store = store ?? new MemoryKvCacheStore();
        PromptFormat = _options.PromptFormat ?? KvLinkLlama3Format.FromTokenizer(tokenizer);
        ModelFingerprint = Engine.ModelFingerprint.Compute(model, tokenizer);
        _worker = new ModelWorker("KVLink model worker");
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json or original/tokenizer.model)
    /// and creates an engine over it. Options are validated before anything is loaded.
    /// </summary>
    public static Task<KvLinkEngine> LoadAsync(string checkpointFolder, KvLinkOptions? options = null, IKvCacheStore? store = null, CancellationToken cancellationToken = default)
    {
        options ??= new KvLinkOptions();
        options.Validate();
        return Task.Run(() =>
        {
            var tokenizer = LlamaTokenizer.FromCheckpointFolder(checkpointFolder);
            var dtype = options.DType switch { ComputeDType.Float32 => ScalarType.Float32, ComputeDType.Float16 => ScalarType.Float16, _ => ScalarType.BFloat16 };
            var model = LlamaCheckpoint.Load(checkpointFolder, dtype);
            return new KvLinkEngine(model, tokenizer, options, store);
        }, cancellationToken);
    }

    /// <summary>The transformer.</summary>
    public LlamaForCausalLM Model { get; }
    /// <summary>The tokenizer.</summary>
    public LlamaTokenizer Tokenizer { get; }
    /// <summary>Where document caches are stored.</summary>
    public IKvCacheStore Store { get; }
    /// <summary>The prompt layout.</summary>
    public PromptFormat PromptFormat { get; }
    /// <summary>Identity of the model; part of every cache key and content id.</summary>
    public string ModelFingerprint { get; }
    /// <summary>Requests waiting for or using the model.</summary>
    public int QueueLength => _worker.Pending;

    /// <summary>
    /// The content-addressed id of a document: the same text, title, model and prompt format give the
    /// same id on any machine and in any run. A caller-supplied <see cref="KvLinkDocument.Id"/> wins.
    /// </summary>
    public string DocumentId(KvLinkDocument document)
    {
        ArgumentNullException.ThrowIfNull(document);
        if (document.Id is not null) return document.Id;
        string identity = string.Join('\0', ModelFingerprint, PromptFormat.Name, document.Title ?? "", document.Text);
        return "doc-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(identity)))[..32];
    }

    /// <summary>The tenant (cache namespace) of this engine's entries; see <see cref="KvLinkOptions.Tenant"/>.</summary>
    public string Tenant => _options.Tenant;

    /// <summary>The store key of a document's cache in a slot: tenant, model fingerprint, prompt format, document id and slot.</summary>
    public KvCacheKey CacheKey(string documentId, int slot) =>
        new(_options.Tenant, ModelFingerprint, PromptFormat.Name, documentId, PromptFormat.DocumentDependsOnSlot ? slot : 0);

    /// <summary>
    /// Forgets a document: removes its cached entries of this engine's tenant (every model and slot) from the
    /// store and drops it from this engine's catalog. Returns how many entries were removed.
    /// </summary>
    public async Task<long> RemoveDocumentAsync(string documentId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(documentId);
        _documents.TryRemove(documentId, out _);
        return await Store.InvalidateAsync(new KvCacheScope(_options.Tenant, null, documentId), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Encodes <paramref name="document"/> on its own and stores its KV cache (for slots 0..PrecomputeSlots-1);
    /// returns its id. Already-stored caches are not recomputed, and concurrent calls for the same document compute it once.
    /// </summary>
    /// <exception cref="ArgumentException">Empty text, or a document longer than the model's positions.</exception>
    public async Task<string> PrecomputeAsync(KvLinkDocument document, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(document);
        if (string.IsNullOrWhiteSpace(document.Text)) throw new ArgumentException("The document text is empty.", nameof(document));
        if (document.Id is { } given && string.IsNullOrWhiteSpace(given)) throw new ArgumentException("A document id, when given, must not be empty.", nameof(document));
        string id = DocumentId(document);
        _documents[id] = document;
        for (int slot = 0; slot < _options.PrecomputeSlots; slot++)
            await GetOrEncodeAsync(id, document, slot, cancellationToken).ConfigureAwait(false);
        return id;
    }

    /// <summary>
    /// Answers <paramref name="query"/> from the documents <paramref name="documentIds"/> (in that order), with the
    /// engine's default mode and link tokens unless <paramref name="options"/> is a <see cref="KvLinkGenerationOptions"/> that sets them.
    /// </summary>
    /// <exception cref="KeyNotFoundException">A document id is unknown (never precomputed in this store).</exception>
    /// <exception cref="ArgumentException">Empty query, too many documents for the link-token ids, or a context longer than the model's positions.</exception>
    public async Task<GenerationResult> GenerateAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var request = await PrepareAsync(query, documentIds, options, clock, cancellationToken).ConfigureAwait(false);
        return await _worker.Run(() => Run(request, null, cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Like <see cref="GenerateAsync"/>, streaming text deltas; the last update carries the full result.</summary>
    public async IAsyncEnumerable<GenerationUpdate> GenerateStreamingAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var request = await PrepareAsync(query, documentIds, options, clock, cancellationToken).ConfigureAwait(false);
        // A consumer that stops reading early cancels the rest of the generation.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var deltas = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var decoder = new Utf8StreamDecoder(Tokenizer);
        var run = _worker.Run(() =>
        {
            try
            {
                var result = Run(request, id => { string d = decoder.Push(id); if (d.Length > 0) deltas.Writer.TryWrite(d); }, stop.Token);
                string rest = decoder.Flush();
                if (rest.Length > 0) deltas.Writer.TryWrite(rest);
                return result;
            }
            finally { deltas.Writer.TryComplete(); }
        }, stop.Token);
        // If the request is cancelled while queued, the worker never runs it: close the channel here.
        _ = run.ContinueWith(_ => deltas.Writer.TryComplete(), TaskScheduler.Default);

        try
        {
            await foreach (var delta in deltas.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                cancellationToken.ThrowIfCancellationRequested(); // buffered deltas are not delivered after cancellation
                yield return new GenerationUpdate(delta);
            }
            yield return new GenerationUpdate("", await run.ConfigureAwait(false));
        }
        finally
        {
            if (!run.IsCompleted) stop.Cancel();
        }
    }

    /// <summary>The prompt a request would use (documents resolved, caches not loaded); for inspection and tests.</summary>
    public async Task<PromptLayout> BuildLayoutAsync(string query, IReadOnlyList<string> documentIds, int linkTokens, CancellationToken cancellationToken = default)
    {
        var docs = new List<IReadOnlyList<int>>();
        for (int slot = 0; slot < documentIds.Count; slot++)
            docs.Add(PromptFormat.Document(Tokenizer, await ResolveDocumentAsync(documentIds[slot], cancellationToken).ConfigureAwait(false), slot));
        return PromptFormat.Build(Tokenizer, docs, query, linkTokens);
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        if (_disposed) return ValueTask.CompletedTask;
        _disposed = true;
        _worker.Dispose();
        _prefix?.Keys.Dispose();
        _prefix?.Values.Dispose();
        return ValueTask.CompletedTask;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
