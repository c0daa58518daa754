using KVLink.Core.Caching;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;
using KVLink.Core.Model;

namespace KVLink.Core.Engine;

/// <summary>Compute precision of the model and of the caches it produces.</summary>
public enum ComputeDType
{
    /// <summary>
    /// bfloat16: half the weight and cache bytes of float32, and 3-4x faster matmuls where the CPU multiplies bf16 in
    /// hardware (AMX, AVX512_BF16) or on CUDA; 2-5x slower prompt matmuls than float32 on CPUs without (AVX2-only x64).
    /// </summary>
    BFloat16,
    /// <summary>float16.</summary>
    Float16,
    /// <summary>float32: exact reference numerics (decoding reads the float32 weights too).</summary>
    Float32,
    /// <summary>
    /// The default: bf16 on CUDA and on CPUs whose bf16 GEMMs are measured at least about as fast as float32's (a bounded
    /// calibration at load, cached per machine); float32 elsewhere, where decoding rows still read bf16 copies of the
    /// weights (decoding is bound by the bytes read). The choice and why: <see cref="KvLinkEngine.RuntimeInfo"/>.
    /// </summary>
    Auto,
}

/// <summary>Settings of a <see cref="KvLinkEngine"/>. Validated when the engine is created.</summary>
public sealed class KvLinkOptions
{
    /// <summary>Link tokens per document (KVLink0/1/5 use 0, 1, 5). Default 5.</summary>
    public int LinkTokens { get; set; } = 5;

    /// <summary>Default context mode. Default <see cref="ContextMode.KvLink"/>.</summary>
    public ContextMode Mode { get; set; } = ContextMode.KvLink;

    /// <summary>
    /// Precision of the model weights and caches. Default <see cref="ComputeDType.Auto"/> (bf16 where the hardware computes
    /// it natively, float32 elsewhere; docs/configuration.md has the costs). Caches of one dtype are never served to another.
    /// </summary>
    public ComputeDType DType { get; set; } = ComputeDType.Auto;

    /// <summary>Where <see cref="ComputeDType.Auto"/> caches its calibration (tests use a temporary folder); null: the user's cache folder. Not bindable from configuration.</summary>
    internal string? CalibrationCacheFolder { get; set; }

    /// <summary>The prompt layout; null uses the KVLink Llama-3 layout with the ids of the tokenizer's special tokens (exactly the published format for Llama-3 tokenizers).</summary>
    public PromptFormat? PromptFormat { get; set; }

    /// <summary>
    /// Slots encoded by <c>PrecomputeAsync</c> (slots 0..n-1), with <see cref="SlotPolicy.Exact"/> and a numbered header
    /// only: there a document's header carries its slot number, so a cache is valid for one slot, and other slots are
    /// encoded on first use and then stored. Under <see cref="SlotPolicy.Shared"/> or a slot-free header one cache serves
    /// every slot and this has no effect. Default 1.
    /// </summary>
    public int PrecomputeSlots { get; set; } = 1;

    /// <summary>
    /// How caches serve slots when the prompt format numbers its documents (the published header): see
    /// <see cref="Engine.SlotPolicy"/>. Ignored by slot-free formats, whose one cache per document is exact in every slot.
    /// Default <see cref="SlotPolicy.Shared"/>.
    /// </summary>
    public SlotPolicy SlotPolicy { get; set; } = SlotPolicy.Shared;

    /// <summary>
    /// The cache namespace of this engine: part of every store key, so engines of different tenants sharing
    /// one store never see each other's entries. Default "default".
    /// </summary>
    public string Tenant { get; set; } = Caching.KvCacheKey.DefaultTenant;

    /// <summary>Generation defaults for calls that pass no options.</summary>
    public GenerationOptions Generation { get; set; } = new();

    /// <summary>
    /// Hugging Face checkpoint folder (config.json, safetensors, tokenizer). Used by the DI registration
    /// (<c>services.AddKvLink</c>), where it is required and must exist; ignored by the engine constructors,
    /// which take a loaded model, and by <c>KvLinkEngine.LoadAsync</c>, which takes the folder as an argument.
    /// </summary>
    public string? ModelPath { get; set; }

    /// <summary>
    /// TorchSharp device the model is loaded on by <c>LoadAsync</c> and the DI registration: "cpu" (default, also when null),
    /// "cuda" or "cuda:N". CUDA needs a CUDA LibTorch runtime package (TorchSharp-cuda-linux or TorchSharp-cuda-windows);
    /// KVLink.Core.Cuda's <c>UseCuda()</c> sets this and the CUDA defaults.
    /// </summary>
    public string? Device { get; set; }

    /// <summary>
    /// How stored caches reach the model's device on each request: given a stored entry and the model's device, the keys
    /// and values to copy into the request's cache; null copies them straight from the entry (right for CPU).
    /// KVLink.Core.Cuda's <c>UseCuda()</c> sets pinned host staging for caches held in CPU stores. It is called on the
    /// engine's model thread inside the request's dispose scope: tensors it creates are freed when the request ends, and
    /// it must not dispose or change the entry's own tensors. Not bindable from configuration.
    /// </summary>
    public Func<DocumentKvCache, TorchSharp.torch.Device, (TorchSharp.torch.Tensor Keys, TorchSharp.torch.Tensor Values)>? CacheTransfer { get; set; }

    /// <summary>
    /// Most documents the engine remembers in memory (text and title, least recently used first out); default 10,000.
    /// A document that falls out is still served: its text is in every stored entry, so it is read back from the store.
    /// </summary>
    public int DocumentCatalogCapacity { get; set; } = 10_000;

    /// <summary>
    /// Used by the DI registration (<c>services.AddKvLink</c>) only: true (default) loads the model when the host starts, so a bad
    /// checkpoint or a missing LibTorch runtime fails the host start instead of the first request; false loads it when the engine
    /// is first resolved.
    /// </summary>
    public bool LoadOnStart { get; set; } = true;

    /// <summary>
    /// Decode with weight-only int8 copies of the projections and the vocabulary head (one scale per output channel):
    /// each generated token reads about half the bytes of bf16 weights, which is what bounds decoding on a CPU. Prompts,
    /// documents and link tokens stay in full precision, so caches and the first token are unchanged. Off by default
    /// (docs/benchmarks.md has the speed and the logit deviation); CPU only; the copies take about half the model's
    /// bf16 size in extra memory. The engine quantizes the model it is given.
    /// </summary>
    public bool DecodeWithInt8Weights { get; set; }

    /// <summary>Compression of documents before caching (LLMLingua-style); off unless <c>KeepFraction</c> is below 1.</summary>
    public Compression.DocumentCompressionOptions Compression { get; set; } = new();

    /// <summary>
    /// Most generation requests decoded together (continuous batching): each step runs one forward over one token of
    /// each and the prompt chunks of new ones. More share the weight reads of a step, each step gets slower. Requests
    /// beyond it wait in FIFO order. Document encodes of a precompute count separately, under the same limit. Default 16.
    /// </summary>
    public int MaxRunningSequences { get; set; } = 16;

    /// <summary>
    /// Byte budget of the attention caches of running sequences (each request holds its prompt plus <c>MaxNewTokens</c>
    /// positions of keys and values). A request that would exceed it waits until others finish; one request alone is
    /// always admitted. Default <see cref="long.MaxValue"/> (no limit besides <see cref="MaxRunningSequences"/>).
    /// </summary>
    public long MaxLiveCacheBytes { get; set; } = long.MaxValue;

    /// <summary>
    /// Most tokens one scheduler step runs: one per decoding request, the rest for prompt chunks of new requests and
    /// document encodes. A long prompt is split across steps so that it never stalls everyone's decoding for long;
    /// a larger budget keeps the matrix products of indexing fuller. Default 512.
    /// </summary>
    public int MaxStepTokens { get; set; } = 512;

    /// <summary>
    /// True (default): documents encoded by <c>PrecomputeAsync</c> and <c>PrecomputeAllAsync</c> get only what generation
    /// requests leave of the step budget and the limits, so indexing a corpus never blocks answering. False: they queue
    /// with requests in arrival order. Documents encoded on demand for a request are never low priority.
    /// </summary>
    public bool PrecomputeAtLowPriority { get; set; } = true;

    /// <summary>
    /// How long a low-priority precompute encode (<see cref="PrecomputeAtLowPriority"/>) yields to generation requests,
    /// counted from when it was submitted. Past it, the encode is admitted ahead of queued requests and its chunks share
    /// each step's budget with requests' prompts in admission order, so a constant stream of requests cannot hold it back
    /// for ever. Default 10 seconds; <see cref="TimeSpan.Zero"/> never yields (only the separate running limit remains);
    /// <see cref="TimeSpan.MaxValue"/> always yields. Must be &gt;= 0.
    /// </summary>
    public TimeSpan PrecomputeMaxWait { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The clock the scheduler measures <see cref="PrecomputeMaxWait"/> with (tests use a fake one). Not bindable from configuration.</summary>
    internal TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>
    /// Whether a step of several sequences may run as groups side by side, one per thread (<see cref="StepGroups"/>);
    /// off only to compare with one forward over all threads (tests, benchmarks).
    /// </summary>
    internal bool GroupSteps { get; set; } = true;

    /// <summary>
    /// Whether a small reduced-precision model's steps pad their rows to a few counts (<see cref="RowBuckets"/>); off only
    /// to compare with exact row counts (benchmarks).
    /// </summary>
    internal bool PadStepRows { get; set; } = true;

    /// <summary>
    /// Bytes of conversation attention caches kept in memory (default 256 MiB; 0 keeps none): each conversation's computed
    /// keys and values after its documents, so that its next turn computes only the new tokens. The least recently used
    /// conversations are dropped first; a dropped one is rebuilt exactly from its messages. See docs/conversations.md.
    /// </summary>
    public long SessionCacheBytes { get; set; } = 256L << 20;

    /// <summary>
    /// True: a conversation's kept cache is also written to the store (best effort, off the model thread), and a replica that
    /// does not hold a conversation reads it from there, so replicas sharing one store (Redis) continue each other's
    /// conversations computing only the new tokens. A stored session is used only when its tokens match the conversation
    /// exactly; otherwise the turns are recomputed. Default false: sessions stay in this process's memory. Needs
    /// <see cref="SessionCacheBytes"/> &gt; 0. A store that quantises keys does not keep sessions (their keys are rotated
    /// at absolute positions).
    /// </summary>
    public bool PersistSessions { get; set; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first invalid setting.</summary>
    public void Validate()
    {
        if (LinkTokens < 0) throw new ArgumentOutOfRangeException(nameof(LinkTokens), LinkTokens, "LinkTokens must be >= 0.");
        if (DocumentCatalogCapacity < 1) throw new ArgumentOutOfRangeException(nameof(DocumentCatalogCapacity), DocumentCatalogCapacity, "DocumentCatalogCapacity must be >= 1.");
        if (MaxRunningSequences < 1) throw new ArgumentOutOfRangeException(nameof(MaxRunningSequences), MaxRunningSequences, "MaxRunningSequences must be >= 1.");
        if (MaxLiveCacheBytes < 1) throw new ArgumentOutOfRangeException(nameof(MaxLiveCacheBytes), MaxLiveCacheBytes, "MaxLiveCacheBytes must be >= 1 (long.MaxValue for no limit).");
        if (MaxStepTokens < 1) throw new ArgumentOutOfRangeException(nameof(MaxStepTokens), MaxStepTokens, "MaxStepTokens must be >= 1.");
        if (PrecomputeMaxWait < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(PrecomputeMaxWait), PrecomputeMaxWait, "PrecomputeMaxWait must be >= 0.");
        ArgumentNullException.ThrowIfNull(TimeProvider, nameof(TimeProvider));
        if (PrecomputeSlots < 1) throw new ArgumentOutOfRangeException(nameof(PrecomputeSlots), PrecomputeSlots, "PrecomputeSlots must be >= 1.");
        if (!Enum.IsDefined(SlotPolicy)) throw new ArgumentOutOfRangeException(nameof(SlotPolicy), SlotPolicy, "Unknown slot policy: use Shared or Exact.");
        if (!Enum.IsDefined(Mode)) throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "Unknown context mode.");
        if (!Enum.IsDefined(DType)) throw new ArgumentOutOfRangeException(nameof(DType), DType, "Unknown dtype.");
        if (SessionCacheBytes < 0) throw new ArgumentOutOfRangeException(nameof(SessionCacheBytes), SessionCacheBytes, "SessionCacheBytes must be >= 0 (0 keeps no conversation caches).");
        if (string.IsNullOrWhiteSpace(Tenant)) throw new ArgumentException("Tenant must not be empty.", nameof(Tenant));
        if (Device is not null && !KvLinkDevices.IsValid(Device))
            throw new ArgumentException($"Device '{Device}' is not a device name: use \"cpu\", \"cuda\" or \"cuda:N\".", nameof(Device));
        if (DecodeWithInt8Weights && Device is not null && Device != "cpu")
            throw new ArgumentException($"DecodeWithInt8Weights is a CPU path; Device is '{Device}'.", nameof(DecodeWithInt8Weights));
        ArgumentNullException.ThrowIfNull(Generation, nameof(Generation));
        Generation.Validate();
        ArgumentNullException.ThrowIfNull(Compression, nameof(Compression));
        Compression.Validate();
        (PromptFormat ?? KvLinkLlama3Format.Published).ValidateLinkTokens(LinkTokens, 1);
    }
}
