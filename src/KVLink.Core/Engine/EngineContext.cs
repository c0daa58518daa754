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
    /// <summary>The store key of a document's cache in a slot (slot 0 for formats whose documents do not depend on it).</summary>
    public KvCacheKey Key(string documentId, int slot) =>
        new(Options.Tenant, Fingerprint, Format.Name, documentId, Format.DocumentDependsOnSlot ? slot : 0);
}
