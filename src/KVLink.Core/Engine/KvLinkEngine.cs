using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Engine;

/// <summary>
/// KVLink retrieval-augmented generation over a Llama model: <see cref="PrecomputeAsync"/> encodes each
/// document once and stores its KV cache; <see cref="GenerateAsync"/> loads the caches of the retrieved
/// documents, re-rotates their keys to their global positions, runs the link tokens and the question in
/// one pass, and generates. Thread safe: model work runs on one dedicated thread, where a continuous-batching scheduler
/// shares every forward pass among the running requests (docs/serving.md); requests beyond its limits queue in order.
/// </summary>
/// <remarks>The engine is a facade: ids and the bounded document catalog (<see cref="DocumentCatalog"/>), stored document
/// entries and in-flight encodes (<see cref="DocumentKvSource"/>), request execution with the kept prompt prefixes and
/// conversations (<see cref="RequestRunner"/>), each call's telemetry and streaming (<see cref="GenerationCalls"/>) and corpus indexing (<see cref="CorpusIndexer"/>) each live in their own type.</remarks>
public sealed class KvLinkEngine : IAsyncDisposable, IDisposable
{
    private readonly EngineContext _context;
    private readonly DocumentCatalog _catalog;
    private readonly DocumentKvSource _documents;
    private readonly RequestRunner _requests;
    private readonly CorpusIndexer _indexer;
    private readonly GenerationCalls _calls;
    private readonly EngineTelemetry _telemetry;
    private readonly KvLinkOptions _options;
    private readonly bool _ownsModel;
    private volatile bool _disposed;

    /// <summary>Creates an engine over a loaded model and tokenizer that logs and records metrics through <paramref name="diagnostics"/>.</summary>
    /// <exception cref="ArgumentException">Invalid options (the message names the setting), or a prompt format whose
    /// link-token or marker ids do not fit the tokenizer (see <see cref="PromptFormat.Validate"/>).</exception>
    /// <exception cref="InvalidDataException">The tokenizer has token ids at or above the model's vocab_size.</exception>
    internal KvLinkEngine(LlamaForCausalLM model, LlamaTokenizer tokenizer, KvLinkOptions? options = null, IKvCacheStore? store = null, KvLinkDiagnostics? diagnostics = null)
        : this(model, tokenizer, options, store, diagnostics, format: null, ownsModel: false, choice: null)
    {
    }

    private KvLinkEngine(LlamaForCausalLM model, LlamaTokenizer tokenizer, KvLinkOptions? options, IKvCacheStore? store, KvLinkDiagnostics? diagnostics,
        PromptFormat? format, bool ownsModel, ComputeDTypeChoice? choice)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        VocabularyFit.Ensure(tokenizer, model.Config);
        _options = options ?? new KvLinkOptions();
        _options.Validate();
        Model = model;
        Tokenizer = tokenizer;
        Store = store ?? new MemoryKvCacheStore();
        // A caller's format is checked here; FromTokenizer checks its own.
        PromptFormat = format ?? _options.PromptFormat ?? KvLinkLlama3Format.FromTokenizer(tokenizer);
        PromptFormat.Validate(tokenizer);
        ModelFingerprint = KVLink.Core.Model.ModelFingerprint.Compute(model, tokenizer);
        // After the fingerprint (which covers the full-precision weights every cache is made with). A float32 model that
        // Auto chose keeps bf16 copies for decoding rows (bandwidth-bound); an explicit Float32 stays exact reference numerics.
        bool int8 = _options.DecodeWithInt8Weights, bf16Copies = !int8 && choice is { FromAuto: true, DType: ComputeDType.Float32 }
            && model.Device.type == TorchSharp.DeviceType.CPU && DecodeGemv.Vectorized(model.Config.HiddenSize);
        if (int8) model.QuantizeInt8ForDecoding();
        else if (bf16Copies) model.KeepBf16ForDecoding();
        // An engine over a model loaded elsewhere runs in that model's dtype, whatever the option says.
        RuntimeInfo = KvLinkRuntimeInfo.Of(model, choice ?? new ComputeDTypeChoice(ComputeDTypeChoice.FromScalarType(model.DType), "model", FromAuto: false), int8, bf16Copies, _options.GroupSteps);
        _ownsModel = ownsModel;
        _telemetry = new EngineTelemetry(this, diagnostics);
        _context = new EngineContext(model, tokenizer, PromptFormat, Store, _options, ModelFingerprint, new ModelWorker("KVLink model worker", wake => new BatchScheduler(model, _options, _telemetry, wake)), _telemetry);
        _catalog = new DocumentCatalog(_options, ModelFingerprint, PromptFormat.Name);
        _documents = new DocumentKvSource(_context, _catalog);
        _requests = new RequestRunner(_context, _documents);
        _indexer = new CorpusIndexer(_context, _documents);
        _calls = new GenerationCalls(_requests, _telemetry, ThrowIfDisposed);
        try
        {
            _requests.KeepDefaultPrefix(); // the shared prompt prefix, encoded through the scheduler before any request
        }
        catch
        {
            DisposeParts();
            throw;
        }
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json or original/tokenizer.model)
    /// and creates an engine over it, on the device named by <see cref="KvLinkOptions.Device"/>, storing caches in
    /// <paramref name="store"/> (default: in memory) and logging and recording metrics through <paramref name="diagnostics"/>.
    /// Without <see cref="KvLinkOptions.PromptFormat"/>, a <c>kvlink_prompt.json</c> in the folder supplies the system
    /// text and the document header (numbered or slot-free) the model was trained with. Options are validated before anything is loaded. The engine owns the model it
    /// loads: disposing the engine disposes the model.
    /// </summary>
    /// <exception cref="InvalidOperationException">No LibTorch runtime package is referenced, or a CUDA device was requested and
    /// TorchSharp has no CUDA runtime (the message names the package to add).</exception>
    /// <exception cref="DirectoryNotFoundException">The checkpoint folder does not exist (the message names its full path).</exception>
    public static Task<KvLinkEngine> LoadAsync(string checkpointFolder, KvLinkOptions? options = null, IKvCacheStore? store = null, KvLinkDiagnostics? diagnostics = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointFolder);
        options ??= new KvLinkOptions();
        options.Validate();
        return Task.Run(() =>
        {
            var loaded = LoadedCheckpoint.Load(checkpointFolder, options);
            try
            {
                return new KvLinkEngine(loaded.Model, loaded.Tokenizer, options, store, diagnostics, loaded.Format, ownsModel: true, loaded.Choice) { ModelId = loaded.ModelId };
            }
            catch
            {
                loaded.Model.Dispose();
                throw;
            }
        }, cancellationToken);
    }

    /// <summary>The validated settings the engine runs with (treat as read-only).</summary>
    public KvLinkOptions Options => _options;
    /// <summary>The engine's name in logs, metric tags and spans (the DI key, or "default").</summary>
    public string Name => _telemetry.Name;
    /// <summary>
    /// The model's name in chat metadata and the <c>gen_ai.request.model</c> metric attribute: config.json's <c>_name_or_path</c>
    /// (or the checkpoint folder's name) when loaded with <c>LoadAsync</c>; "llama" for an engine over a model loaded elsewhere.
    /// </summary>
    public string ModelId { get; private init; } = "llama";
    /// <summary>The transformer.</summary>
    internal LlamaForCausalLM Model { get; }
    /// <summary>The tokenizer.</summary>
    public LlamaTokenizer Tokenizer { get; }
    /// <summary>Where document caches are stored.</summary>
    public IKvCacheStore Store { get; }
    /// <summary>The prompt layout.</summary>
    public PromptFormat PromptFormat { get; }
    /// <summary>Identity of the model; part of every cache key and content id.</summary>
    public string ModelFingerprint { get; }
    /// <summary>
    /// What the engine computes with: the CPU tier, LibTorch's capability, the compute dtype (<see cref="ComputeDType.Auto"/>
    /// resolved) and why, and the decode kernel. Logged once at load and reported by the health check.
    /// </summary>
    public KvLinkRuntimeInfo RuntimeInfo { get; }
    /// <summary>Requests waiting for or using the model.</summary>
    public int QueueLength => _context.Worker.Pending;

    /// <summary>Sequences (generation requests and document encodes) in the scheduler's running batch (the kvlink.scheduler gauges).</summary>
    internal int RunningSequences => _context?.Worker.Scheduler.Running ?? 0;
    /// <summary>Sequences waiting for admission to the running batch (the kvlink.scheduler gauges).</summary>
    internal int QueuedSequences => _context?.Worker.Scheduler.Queued ?? 0;
    /// <summary>The engine's parts: the one seam through which the test support looks inside (KVLink.TestSupport's EngineProbes).</summary>
    internal EngineParts Parts => new(_context, _catalog, _requests);

    /// <summary>
    /// The id of a document. Without a caller-supplied <see cref="KvLinkDocument.Id"/> it is content-addressed: the same
    /// text, title, model, prompt format and compression give the same id on any machine and in any run. A caller's id is
    /// returned as given, except that each <c>~</c> in it is doubled, since a single <c>~</c> introduces the suffix
    /// <c>~keep{fraction}</c> of a document cached compressed (kept fraction below 1). The mapping is one-to-one, so no
    /// caller id can ever name another document's (compressed) caches.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The engine has been disposed.</exception>
    public string DocumentId(KvLinkDocument document)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(document);
        return _catalog.Id(document);
    }

    /// <summary>The tenant (cache namespace) of this engine's entries; see <see cref="KvLinkOptions.Tenant"/>.</summary>
    public string Tenant => _options.Tenant;

    /// <summary>The store key of a document's cache in a slot: tenant, model fingerprint, prompt format, document id and slot.</summary>
    /// <exception cref="ObjectDisposedException">The engine has been disposed.</exception>
    public KvCacheKey CacheKey(string documentId, int slot)
    {
        ThrowIfDisposed();
        return _context.Key(documentId, slot);
    }

    /// <summary>
    /// Forgets a document: removes its cached entries of this engine's tenant (every model and slot) from the
    /// store and drops it from this engine's catalog. Returns how many entries were removed.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The engine has been disposed.</exception>
    public async Task<long> RemoveDocumentAsync(string documentId, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentException.ThrowIfNullOrWhiteSpace(documentId);
        return await _documents.RemoveAsync(documentId, cancellationToken).ConfigureAwait(false);
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
        return (await _documents.PrecomputeAsync(document, cancellationToken).ConfigureAwait(false)).Id;
    }

    /// <summary>
    /// Answers <paramref name="query"/> from the documents <paramref name="documentIds"/> (in that order), with the
    /// engine's default mode and link tokens unless <paramref name="options"/> is a <see cref="KvLinkGenerationOptions"/> that sets them.
    /// </summary>
    /// <exception cref="KeyNotFoundException">A document id is unknown (never precomputed in this store).</exception>
    /// <exception cref="ArgumentException">Empty query, too many documents for the link-token ids, or a context longer than the model's positions.</exception>
    public Task<GenerationResult> GenerateAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        _calls.RunAsync(query, documentIds, options, cancellationToken);

    /// <summary>Like <see cref="GenerateAsync"/>, streaming text deltas; the last update carries the full result.</summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateStreamingAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        _calls.StreamAsync(query, documentIds, options, cancellationToken);

    /// <summary>
    /// Answers the last user message of a conversation from the documents <paramref name="documentIds"/>, with the whole
    /// history in the prompt (layout: docs/prompt-format.md). System messages are added to the format's trained system
    /// text. The conversation's attention cache after its documents is kept (<see cref="KvLinkOptions.SessionCacheBytes"/>)
    /// under <see cref="KvLinkGenerationOptions.ConversationId"/> (or a key derived from the conversation's start, returned
    /// as <see cref="GenerationResult.ConversationId"/>), so the next turn computes only its new tokens; the result is the
    /// same as recomputing the whole conversation.
    /// </summary>
    /// <exception cref="ArgumentException">The messages do not form a conversation ending with a user message, or as for <see cref="GenerateAsync"/>.</exception>
    /// <exception cref="NotSupportedException">A message has a role or content the prompt cannot carry (tools, images), or the prompt format has no conversation layout.</exception>
    public Task<GenerationResult> ChatAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, IReadOnlyList<string> documentIds, GenerationOptions? options = null,
        CancellationToken cancellationToken = default) =>
        _calls.RunAsync(() => ChatTranscript.Read(messages), documentIds, options, cancellationToken);

    /// <summary>Like <see cref="ChatAsync(IEnumerable{Microsoft.Extensions.AI.ChatMessage}, IReadOnlyList{string}, GenerationOptions?, CancellationToken)"/>,
    /// for a conversation the chat client has already read (a transcript is read once).</summary>
    internal Task<GenerationResult> AnswerAsync(ConversationPrompt conversation, IReadOnlyList<string> documentIds, GenerationOptions? options,
        CancellationToken cancellationToken) =>
        _calls.RunAsync(() => conversation, documentIds, options, cancellationToken);

    /// <summary>Like <see cref="ChatAsync(IEnumerable{Microsoft.Extensions.AI.ChatMessage}, IReadOnlyList{string}, GenerationOptions?, CancellationToken)"/>, streaming text deltas; the last update carries the full result.</summary>
    public IAsyncEnumerable<GenerationUpdate> ChatStreamingAsync(IEnumerable<Microsoft.Extensions.AI.ChatMessage> messages, IReadOnlyList<string> documentIds,
        GenerationOptions? options = null, CancellationToken cancellationToken = default) =>
        _calls.StreamAsync(() => ChatTranscript.Read(messages), documentIds, options, cancellationToken);

    /// <summary>Streaming <see cref="AnswerAsync"/>.</summary>
    internal IAsyncEnumerable<GenerationUpdate> AnswerStreamingAsync(ConversationPrompt conversation, IReadOnlyList<string> documentIds,
        GenerationOptions? options, CancellationToken cancellationToken) =>
        _calls.StreamAsync(() => conversation, documentIds, options, cancellationToken);

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        if (_disposed) return ValueTask.CompletedTask;
        _disposed = true;
        DisposeParts();
        if (_ownsModel) Model.Dispose();
        return ValueTask.CompletedTask;
    }

    // Queued work finishes, then the model thread stops; the engine's own parts go after it.
    private void DisposeParts()
    {
        _context.Worker.Dispose();
        _requests.Dispose();
        _telemetry.Dispose();
    }

    /// <summary>Same as <see cref="DisposeAsync"/> (which completes synchronously): lets queued work finish, then stops the model thread.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>
    /// Precomputes a whole corpus with bounded parallelism, reporting progress after every document.
    /// Already-stored documents are found, not recomputed, so a cancelled run can simply be started again.
    /// </summary>
    /// <remarks>
    /// Cancellation stops taking new documents; a document already being encoded is finished and stored
    /// whole, and the method returns (throwing <see cref="OperationCanceledException"/>) only when nothing of
    /// this run is still being written. Every store entry is therefore either complete or absent.
    /// </remarks>
    /// <exception cref="OperationCanceledException">Cancelled; documents finished so far stay stored.</exception>
    /// <exception cref="ArgumentException">A document is invalid (empty text, too long); documents finished so far stay stored.</exception>
    /// <exception cref="ObjectDisposedException">The engine has been disposed.</exception>
    // Two overloads with optional parameters (RS0026): they differ in the first parameter's type, as in the BCL, never ambiguously.
#pragma warning disable RS0026
    public Task<KvLinkIndexingResult> PrecomputeAllAsync(IEnumerable<KvLinkDocument> documents, KvLinkIndexingOptions? options = null,
        IProgress<KvLinkIndexingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return _indexer.PrecomputeAllAsync(documents, options, progress, cancellationToken);
    }

    /// <summary>Like <see cref="PrecomputeAllAsync(IEnumerable{KvLinkDocument}, KvLinkIndexingOptions?, IProgress{KvLinkIndexingProgress}?, CancellationToken)"/>, for a streamed corpus (total unknown).</summary>
    /// <exception cref="ObjectDisposedException">The engine has been disposed.</exception>
    public Task<KvLinkIndexingResult> PrecomputeAllAsync(IAsyncEnumerable<KvLinkDocument> documents, KvLinkIndexingOptions? options = null,
        IProgress<KvLinkIndexingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        return _indexer.PrecomputeAllAsync(documents, options, progress, cancellationToken);
    }
#pragma warning restore RS0026

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
