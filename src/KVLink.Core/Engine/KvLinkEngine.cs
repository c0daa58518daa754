using System.Globalization;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using KVLink.Core.Caching;
using KVLink.Core.Diagnostics;
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
public sealed partial class KvLinkEngine : IAsyncDisposable, IDisposable
{
    private readonly KvLinkOptions _options;
    private readonly ModelWorker _worker;
    private readonly ConcurrentDictionary<string, KvLinkDocument> _documents = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<InflightKey, Lazy<Task<DocumentKvCache>>> _inflight = new();
    private volatile bool _disposed;
    private PrefixCache? _prefix; // touched only on the model thread

    private sealed record PrefixCache(int[] Tokens, Tensor Keys, Tensor Values);
    private readonly EngineTelemetry _telemetry;
    private bool _ownsModel;

    /// <summary>Creates an engine over a loaded model and tokenizer.</summary>
    /// <exception cref="ArgumentException">Invalid options (the message names the setting).</exception>
    public KvLinkEngine(LlamaForCausalLM model, LlamaTokenizer tokenizer, KvLinkOptions? options = null, IKvCacheStore? store = null)
        : this(model, tokenizer, options, store, null)
    {
    }

    /// <summary>Creates an engine over a loaded model and tokenizer that logs and records metrics through <paramref name="diagnostics"/>.</summary>
    /// <exception cref="ArgumentException">Invalid options (the message names the setting), or a prompt format whose
    /// link-token or marker ids do not fit the tokenizer (see <see cref="PromptFormat.Validate"/>).</exception>
    public KvLinkEngine(LlamaForCausalLM model, LlamaTokenizer tokenizer, KvLinkOptions? options, IKvCacheStore? store, KvLinkDiagnostics? diagnostics)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _options = options ?? new KvLinkOptions();
        _options.Validate();
        Model = model;
        Tokenizer = tokenizer;
        Store = store ?? new MemoryKvCacheStore();
        // A caller's format is checked here; FromTokenizer checks its own.
        PromptFormat = _options.PromptFormat ?? KvLinkLlama3Format.FromTokenizer(tokenizer);
        PromptFormat.Validate(tokenizer);
        ModelFingerprint = Engine.ModelFingerprint.Compute(model, tokenizer);
        _worker = new ModelWorker("KVLink model worker");
        _telemetry = new EngineTelemetry(this, diagnostics);
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint folder (config.json, safetensors, tokenizer.json or original/tokenizer.model)
    /// and creates an engine over it. Without <see cref="KvLinkOptions.PromptFormat"/>, a <c>kvlink_prompt.json</c> in the
    /// folder (<see cref="PromptSettingsFile"/>) supplies the system text the model was trained with. Options are validated before anything is loaded. The engine owns the
    /// model it loads: disposing the engine disposes the model.
    /// </summary>
    public static Task<KvLinkEngine> LoadAsync(string checkpointFolder, KvLinkOptions? options = null, IKvCacheStore? store = null, CancellationToken cancellationToken = default) =>
        LoadAsync(checkpointFolder, options, store, null, cancellationToken);

    /// <summary>
    /// Like <see cref="LoadAsync(string, KvLinkOptions?, IKvCacheStore?, CancellationToken)"/>, with logging and metrics,
    /// on the device named by <see cref="KvLinkOptions.Device"/>. The engine owns the model it loads and disposes it.
    /// </summary>
    /// <exception cref="InvalidOperationException">A CUDA device was requested and TorchSharp has no CUDA runtime (the message names the package to add).</exception>
    public static Task<KvLinkEngine> LoadAsync(string checkpointFolder, KvLinkOptions? options, IKvCacheStore? store, KvLinkDiagnostics? diagnostics, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(checkpointFolder);
        options ??= new KvLinkOptions();
        options.Validate();
        return Task.Run(() =>
        {
            var device = KvLinkDevices.Resolve(options.Device);
            var tokenizer = LlamaTokenizer.FromCheckpointFolder(checkpointFolder);
            var dtype = options.DType switch { ComputeDType.Float32 => ScalarType.Float32, ComputeDType.Float16 => ScalarType.Float16, _ => ScalarType.BFloat16 };
            var model = LlamaCheckpoint.Load(checkpointFolder, dtype, device);
            try
            {
                // A folder may carry the prompt settings it was trained with (kvlink_prompt.json, as the demo model does).
                var format = options.PromptFormat ?? (PromptSettingsFile.ReadSystemText(checkpointFolder) is { } system ? KvLinkLlama3Format.FromTokenizer(tokenizer, system) : null);
                return new KvLinkEngine(model, tokenizer, options, store, diagnostics) { _ownsModel = true, PromptFormat = format ?? KvLinkLlama3Format.FromTokenizer(tokenizer) };
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }, cancellationToken);
    }

    /// <summary>The validated settings the engine runs with (treat as read-only).</summary>
    public KvLinkOptions Options => _options;
    /// <summary>The engine's name in logs, metric tags and spans (the DI key, or "default").</summary>
    public string Name => _telemetry.Name;
    /// <summary>The transformer.</summary>
    public LlamaForCausalLM Model { get; }
    /// <summary>The tokenizer.</summary>
    public LlamaTokenizer Tokenizer { get; }
    /// <summary>Where document caches are stored.</summary>
    public IKvCacheStore Store { get; }
    /// <summary>The prompt layout.</summary>
    public PromptFormat PromptFormat { get; private init; }
    /// <summary>Identity of the model; part of every cache key and content id.</summary>
    public string ModelFingerprint { get; }
    /// <summary>Requests waiting for or using the model.</summary>
    public int QueueLength => _worker.Pending;

    /// <summary>Work items the model worker has started (tests: proof that a request cancelled while queued never ran).</summary>
    internal long WorkStarted => _worker.Started;

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
        double fraction = KeepFractionOf(document);
        // A compressed document is another cache: the kept fraction (and scorer) is part of its id, hence of every key.
        string suffix = fraction < 1 ? "~keep" + fraction.ToString("R", CultureInfo.InvariantCulture) : "";
        if (document.Id is not null) return document.Id.Replace("~", "~~", StringComparison.Ordinal) + suffix;
        string identity = string.Join('\0', ModelFingerprint, PromptFormat.Name, document.Title ?? "", document.Text);
        if (fraction < 1) identity += '\0' + CompressionIdentity(fraction);
        return "doc-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(identity)))[..32] + suffix;
    }

    /// <summary>The tenant (cache namespace) of this engine's entries; see <see cref="KvLinkOptions.Tenant"/>.</summary>
    public string Tenant => _options.Tenant;

    /// <summary>The store key of a document's cache in a slot: tenant, model fingerprint, prompt format, document id and slot.</summary>
    /// <exception cref="ObjectDisposedException">The engine has been disposed.</exception>
    public KvCacheKey CacheKey(string documentId, int slot)
    {
        ThrowIfDisposed();
        return new(_options.Tenant, ModelFingerprint, PromptFormat.Name, documentId, PromptFormat.DocumentDependsOnSlot ? slot : 0);
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
        _documents.TryRemove(documentId, out _);
        _keptBodies.TryRemove(documentId, out _);
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
        return (await PrecomputeCoreAsync(document, cancellationToken).ConfigureAwait(false)).Id;
    }

    /// <summary>Precompute with accounting: the id, tokens of slot 0, and tokens encoded now (0 when everything was stored).</summary>
    private async Task<(string Id, int Tokens, int Computed)> PrecomputeCoreAsync(KvLinkDocument document, CancellationToken cancellationToken)
    {
        string id = DocumentId(document);
        var known = document with { KeepFraction = KeepFractionOf(document) };
        // Re-precomputing a caller's id with new content replaces the document: its old entries (every slot) are removed
        // first. Entries are also checked against the content on every read, so a copy that survives elsewhere is a miss.
        if (_documents.TryGetValue(id, out var previous) && (previous.Text != known.Text || previous.Title != known.Title))
        {
            _keptBodies.TryRemove(id, out _);
            await Store.InvalidateAsync(new KvCacheScope(_options.Tenant, null, id), cancellationToken).ConfigureAwait(false);
        }
        _documents[id] = known;
        using var activity = _telemetry.StartPrecompute(id);
        var clock = Stopwatch.StartNew();
        int tokens = 0, computed = 0, slotsComputed = 0;
        try
        {
            for (int slot = 0; slot < _options.PrecomputeSlots; slot++)
            {
                var (entry, wasComputed) = await GetOrEncodeAsync(id, known, slot, null, cancellationToken, countBytes: false).ConfigureAwait(false);
                if (slot == 0) tokens = entry.Length;
                if (wasComputed) { computed += entry.Length; slotsComputed++; }
            }
        }
        catch (Exception e) when (EngineTelemetry.Fail(activity, e)) { throw; }
        _telemetry.Precomputed(activity, id, clock.Elapsed, tokens, computed, slotsComputed);
        return (id, tokens, computed);
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
        using var activity = _telemetry.StartGenerate(documentIds?.Count ?? 0, streaming: false);
        try
        {
            var request = await PrepareAsync(query, documentIds!, options, clock, cancellationToken).ConfigureAwait(false);
            var result = await _worker.Run(() => Run(request, null, cancellationToken), cancellationToken).ConfigureAwait(false);
            _telemetry.Generated(activity, request.Mode, documentIds!.Count, result);
            return result;
        }
        catch (Exception e) when (_telemetry.GenerateFailed(activity, e)) { throw; }
    }

    /// <summary>Like <see cref="GenerateAsync"/>, streaming text deltas; the last update carries the full result.</summary>
    public async IAsyncEnumerable<GenerationUpdate> GenerateStreamingAsync(string query, IReadOnlyList<string> documentIds, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        using var activity = _telemetry.StartGenerate(documentIds?.Count ?? 0, streaming: true);
        PreparedRequest request;
        try { request = await PrepareAsync(query, documentIds!, options, clock, cancellationToken).ConfigureAwait(false); }
        catch (Exception e) when (_telemetry.GenerateFailed(activity, e)) { throw; }
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
            GenerationResult final;
            try { final = await run.ConfigureAwait(false); }
            catch (Exception e) when (_telemetry.GenerateFailed(activity, e)) { throw; }
            _telemetry.Generated(activity, request.Mode, documentIds!.Count, final);
            yield return new GenerationUpdate("", final);
        }
        finally
        {
            if (!run.IsCompleted) stop.Cancel();
        }
    }

    /// <summary>The prompt a request would use (documents resolved, caches not loaded); for inspection and tests.</summary>
    /// <exception cref="ObjectDisposedException">The engine has been disposed.</exception>
    public async Task<PromptLayout> BuildLayoutAsync(string query, IReadOnlyList<string> documentIds, int linkTokens, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(documentIds);
        var docs = new List<IReadOnlyList<int>>();
        for (int slot = 0; slot < documentIds.Count; slot++)
            docs.Add(await DocumentTokensAsync(documentIds[slot], await ResolveDocumentAsync(documentIds[slot], null, cancellationToken).ConfigureAwait(false), slot, cancellationToken).ConfigureAwait(false));
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
        _telemetry.Dispose();
        if (_ownsModel) Model.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>Same as <see cref="DisposeAsync"/> (which completes synchronously): lets queued work finish, then stops the model thread.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
