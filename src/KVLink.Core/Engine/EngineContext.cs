using KVLink.Core.Caching;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Engine;

/// <summary>What every part of one engine shares: the model and its tokenizer, the prompt format, the store, the settings,
/// the model's identity, the model thread and the telemetry. Built once by <see cref="KvLinkEngine"/>.</summary>
internal sealed record EngineContext(
    LlamaForCausalLM Model, LlamaTokenizer Tokenizer, PromptFormat Format, IKvCacheStore Store, KvLinkOptions Options,
    string Fingerprint, ModelWorker Worker, EngineTelemetry Telemetry)
{
    /// <summary>
    /// The slot whose stored entry (and its document tokens) serves a document placed in <paramref name="slot"/> (KVLink mode): the slot
    /// itself for a numbered format under <see cref="SlotPolicy.Exact"/>; else 0, one cache per document (exact for a
    /// slot-free format, whose tokens are the same in every slot; under <see cref="SlotPolicy.Shared"/> the header reads slot 1's number).
    /// </summary>
    public int StoredSlot(int slot) => Format.DocumentDependsOnSlot && Options.SlotPolicy == SlotPolicy.Exact ? slot : 0;

    /// <summary>The store key of a document's cache in a slot (the key's slot is <see cref="StoredSlot"/>).</summary>
    public KvCacheKey Key(string documentId, int slot) =>
        new(Options.Tenant, Fingerprint, Format.Name, documentId, StoredSlot(slot));
}
