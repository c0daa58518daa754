using KVLink.TestSupport;
using KVLink.Core.Redis;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Tests.Engine;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Caching;

/// <summary>The engine over every store: identical answers, tenancy, invalidation; and int8 quantisation measured against bf16.</summary>
[Collection(GarnetCollection.Name)]
public sealed class StoreEngineTests(GarnetFixture garnet, ITestOutputHelper output) : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-engine-store-tests", Guid.NewGuid().ToString("N"));
    private readonly string _prefix = "e" + Guid.NewGuid().ToString("N")[..12];
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 8, StopTokenIds = [] };

    private IKvCacheStore Create(string kind) => kind switch
    {
        "memory" => new MemoryKvCacheStore(),
        "file" => new FileKvCacheStore(Path.Combine(_folder, "file")),
        "redis" => new RedisKvCacheStore(garnet.Connection, new() { KeyPrefix = _prefix }),
        "tiered" => new TieredKvCacheStore(new MemoryKvCacheStore(new() { ByteBudget = 64 << 10 }), new FileKvCacheStore(Path.Combine(_folder, "tier")),
            new RedisKvCacheStore(garnet.Connection, new() { KeyPrefix = _prefix + "t" })),
        _ => throw new ArgumentException(kind),
    };

    private KvLinkEngine Engine(CheckpointFixture fx, IKvCacheStore store, string tenant = "default") =>
        new(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, Tenant = tenant }, store);

    [Fact]
    public async Task Every_store_gives_the_engine_identical_answers_and_a_fresh_engine_reuses_the_stored_caches()
    {
        using var fx = new CheckpointFixture();
        var docs = Enumerable.Range(0, 4).Select(i => CheckpointFixture.Doc(i, 6 + i)).ToList();
        IReadOnlyList<int>? reference = null;
        foreach (var kind in new[] { "memory", "file", "redis", "tiered" })
        {
            var store = Create(kind);
            List<string> ids;
            await using (var engine = Engine(fx, store))
            {
                ids = [];
                foreach (var d in docs) ids.Add(await engine.PrecomputeAsync(d));
                var first = await engine.GenerateAsync("Which word?", ids, Greedy);
                reference ??= first.TokenIds;
                Assert.Equal(reference, first.TokenIds);
            }
            // A new engine knows the documents only through the store; slot-0 caches are hits, other slots are encoded from the stored text.
            await using var fresh = Engine(fx, store);
            var again = await fresh.GenerateAsync("Which word?", ids, Greedy);
            Assert.Equal(reference, again.TokenIds);
            Assert.True(again.Usage.CachedTokens > 0, kind);
            Assert.Equal(0, store.Statistics.Rejected);
        }
    }

    [Fact]
    public async Task Tenants_sharing_a_store_are_isolated_and_documents_can_be_removed()
    {
        using var fx = new CheckpointFixture();
        var store = Create("tiered");
        await using var a = Engine(fx, store, tenant: "A");
        await using var b = Engine(fx, store, tenant: "B");
        string id = await a.PrecomputeAsync(CheckpointFixture.Doc(1, 8));
        Assert.True(await store.ContainsAsync(a.CacheKey(id, 0)));
        Assert.False(await store.ContainsAsync(b.CacheKey(id, 0)));
        await Assert.ThrowsAsync<KeyNotFoundException>(() => b.GenerateAsync("Q?", [id], Greedy));

        Assert.Equal(1, await a.RemoveDocumentAsync(id));
        Assert.False(await store.ContainsAsync(a.CacheKey(id, 0)));
        await Assert.ThrowsAsync<KeyNotFoundException>(() => a.GenerateAsync("Q?", [id], Greedy));
    }

    [Fact]
    public async Task A_different_model_misses_old_entries_and_a_corrupt_entry_is_recomputed()
    {
        using var fx = new CheckpointFixture();
        var store = (FileKvCacheStore)Create("file");
        await using var engine = Engine(fx, store);
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(2, 8));
        var expected = await engine.GenerateAsync("Q?", [id], Greedy);

        // Flip a byte of the stored file: the engine's next call misses, recomputes from the text it knows and answers the same.
        string path = store.PathOf(engine.CacheKey(id, 0));
        var bytes = File.ReadAllBytes(path);
        bytes[^5] ^= 0xff;
        File.WriteAllBytes(path, bytes);
        var after = await engine.GenerateAsync("Q?", [id], Greedy);
        Assert.Equal(expected.TokenIds, after.TokenIds);
        Assert.Equal(1, store.Statistics.Rejected);

        // Another model (other weights) has another fingerprint: its keys never meet these entries.
        using var otherModel = LlamaCheckpoint.Load(fx.Folder, ScalarType.BFloat16);
        await using var other = new KvLinkEngine(otherModel, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format }, store);
        Assert.NotEqual(engine.ModelFingerprint, other.ModelFingerprint);
        Assert.False(await store.ContainsAsync(other.CacheKey(id, 0)));
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope(ModelFingerprint: engine.ModelFingerprint)));
    }

    /// <summary>
    /// Measures int8 storage (per channel and per token) against bf16 storage on a bf16 model: KL divergence of
    /// the next-token distributions and top-1 agreement over every computed position, plus bytes. Figures are
    /// printed; the assertions only guard against gross regressions.
    /// </summary>
    [Fact]
    public async Task Int8_storage_against_bf16_storage_on_a_bf16_checkpoint()
    {
        using var fx = new CheckpointFixture();
        using var model = LlamaCheckpoint.Load(fx.Folder, ScalarType.BFloat16);
        await using var engine = new KvLinkEngine(model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.BFloat16, PrecomputeSlots = 10 });
        var ids = new List<string>();
        for (int i = 0; i < 10; i++) ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(i, 40 + 5 * i)));
        var layout = await engine.BuildLayoutAsync("Which word comes first in the third document?", ids, 1);
        var entries = new List<DocumentKvCache>();
        for (int slot = 0; slot < ids.Count; slot++) entries.Add((await engine.Store.GetAsync(engine.CacheKey(ids[slot], slot)))!);

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor Logits(IReadOnlyList<DocumentKvCache> docs)
        {
            using var cache = new AttentionCache(model.Config, layout.Length, ScalarType.BFloat16);
            DocumentPlacement.Place(model, cache, layout, [.. docs.Select(e => (e.Keys, e.Values))]);
            return LinkTokenPass.Forward(model, cache, layout, lastOnly: false).to(ScalarType.Float32).squeeze(0);
        }
        long bf16Bytes = entries.Sum(e => (long)KvCacheFormat.Serialize(e).Length);
        var baseline = Logits(entries);
        var baselineAgain = Logits([.. entries.Select(e => KvCacheFormat.Deserialize(KvCacheFormat.Serialize(e)))]);
        var logP = baseline.log_softmax(-1);
        output.WriteLine($"Synthetic bf16 checkpoint (hidden 64, 2 layers, 4 heads / 2 KV heads, head_dim 16), 10 documents, {layout.DocumentTokenCount} document tokens, {baseline.shape[0]} computed positions");
        output.WriteLine($"bf16 stored  : {bf16Bytes,9} bytes, KL {Kl(logP, baselineAgain):E2}, top-1 {Top1(baseline, baselineAgain):P1}");
        foreach (var compression in new[] { KvCacheQuantization.Int8PerChannel, KvCacheQuantization.Int8PerToken })
        {
            var blobs = entries.Select(e => KvCacheFormat.Serialize(e, compression)).ToList();
            var quantised = blobs.Select(b => KvCacheFormat.Deserialize(b)).ToList();
            var logits = Logits(quantised);
            double kl = Kl(logP, logits), top1 = Top1(baseline, logits);
            long bytes = blobs.Sum(b => (long)b.Length);
            output.WriteLine($"{compression,-13}: {bytes,9} bytes ({1 - (double)bytes / bf16Bytes:P1} saved), KL(bf16 || int8) {kl:E2}, top-1 agreement {top1:P1}");
            Assert.True(kl < 0.05, $"{compression}: KL {kl}");
            Assert.True(top1 > 0.8, $"{compression}: top-1 {top1}");
            Assert.True(bytes < bf16Bytes * 0.7);
        }
        Assert.Equal(0, Kl(logP, baselineAgain), 6);
    }

    private static double Kl(Tensor logP, Tensor logitsQ)
    {
        var logQ = logitsQ.log_softmax(-1);
        return (logP.exp() * (logP - logQ)).sum(-1).mean().item<float>();
    }

    private static double Top1(Tensor a, Tensor b) => a.argmax(-1).eq(b.argmax(-1)).to(ScalarType.Float32).mean().item<float>();

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
