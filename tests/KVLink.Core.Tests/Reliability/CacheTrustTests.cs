using KVLink.TestSupport;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Prompting;
using KVLink.Core.Tests.Engine;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// A cache is never served for something it was not computed from: another model, other content, another id, or an
/// entry whose shapes, tokens or numbers do not belong to the document. Each case is checked through the public API
/// against a clean engine's answer, and by whether the engine had to encode the document again.
/// </summary>
public class CacheTrustTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 6, StopTokenIds = [] };

    [Fact]
    public void The_fingerprint_changes_when_any_single_weight_of_any_parameter_changes()
    {
        string folder = Path.Combine(Path.GetTempPath(), "kvlink-tests", Guid.NewGuid().ToString("N"));
        SyntheticCheckpoint.Write(folder, SyntheticCheckpoint.SmallConfig(hidden: 64, layers: 2, heads: 4, kvHeads: 2), seed: 5);
        try
        {
            using var model = KVLink.Core.Model.LlamaCheckpoint.Load(folder, ScalarType.Float32);
            string original = ModelFingerprint.Compute(model, fx.Tokenizer);
            var rng = new Random(7);
            using var _ = no_grad();
            foreach (var (name, p) in model.named_parameters())
            {
                // One element anywhere, most of them far from where a strided sample would look.
                long at = rng.NextInt64(p.numel());
                using var flat = p.view(-1);
                float old = flat[at].item<float>();
                flat[at] = old + 0.5f;
                Assert.NotEqual(original, ModelFingerprint.Compute(model, fx.Tokenizer));
                flat[at] = old;
            }
            Assert.Equal(original, ModelFingerprint.Compute(model, fx.Tokenizer));
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    [Fact]
    public async Task A_model_with_other_weights_and_the_same_config_is_never_served_the_original_caches()
    {
        var store = new CountingStore();
        await using var a = fx.Engine(store: store);
        string id = await a.PrecomputeAsync(CheckpointFixture.Doc(1, 8) with { Id = "shared" });

        string folder = Path.Combine(Path.GetTempPath(), "kvlink-tests", Guid.NewGuid().ToString("N"));
        SyntheticCheckpoint.Write(folder, SyntheticCheckpoint.SmallConfig(hidden: 64, layers: 2, heads: 4, kvHeads: 2, maxPositions: 2048), seed: 11);
        try
        {
            using var variant = KVLink.Core.Model.LlamaCheckpoint.Load(folder, ScalarType.Float32);
            using (no_grad())
                foreach (var (_, p) in variant.named_parameters()) p.mul_(1.01f); // a "fine-tune": every weight changed a little
            await using var b = new KvLinkEngine(variant, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32 }, store);
            Assert.NotEqual(a.ModelFingerprint, b.ModelFingerprint);
            await b.PrecomputeAsync(CheckpointFixture.Doc(1, 8) with { Id = "shared" });
            Assert.Equal(2, store.Puts); // b encoded its own cache instead of taking a's
        }
        finally { Directory.Delete(folder, recursive: true); }
    }

    [Fact]
    public async Task Re_precomputing_an_id_with_new_text_answers_from_the_new_text_on_this_and_other_engines()
    {
        var store = new MemoryKvCacheStore();
        await using var a = fx.Engine(store: store);
        var first = new KvLinkDocument("w1 w2 w3 w4 w5 w6", "T", "mine");
        var second = first with { Text = "w90 w91 w92 w93 w94 w95 w96" };
        await a.PrecomputeAsync(first);
        var before = await a.GenerateAsync("q?", ["mine"], Greedy);
        await a.PrecomputeAsync(second);
        var after = await a.GenerateAsync("q?", ["mine"], Greedy);
        Assert.Equal(await CleanAnswer(second, "mine"), after.TokenIds);
        Assert.Equal(await CleanAnswer(first, "mine"), before.TokenIds);

        // A second engine over the same store (another replica) that never saw the old text serves the new one.
        await using var b = fx.Engine(store: store);
        Assert.Equal(after.TokenIds, (await b.GenerateAsync("q?", ["mine"], Greedy)).TokenIds);
    }

    [Fact]
    public async Task An_entry_stored_under_the_right_key_for_other_text_is_a_miss()
    {
        var store = new CountingStore();
        await using var a = fx.Engine(store: store);
        var doc = new KvLinkDocument("w5 w6 w7 w8", "T", "victim");
        await a.PrecomputeAsync(doc);
        // Another engine (another catalog) writes a different text under the same caller id and key.
        await using var b = fx.Engine(store: store);
        await b.PrecomputeAsync(doc with { Text = "w40 w41 w42 w43 w44" });
        Assert.Equal(await CleanAnswer(doc, "victim"), (await a.GenerateAsync("q?", ["victim"], Greedy)).TokenIds);
    }

    [Theory]
    [InlineData("x", 0.5, "x~keep0.5", 1.0)]
    [InlineData("a~", 0.5, "a~~keep0.5", 1.0)]
    [InlineData("a", 0.5, "a~~keep0.5", 0.5)]
    [InlineData("x~keep0.5", 1.0, "x~~keep0.5", 1.0)]
    public async Task Caller_ids_and_compressed_ids_never_collide(string id1, double keep1, string id2, double keep2)
    {
        await using var engine = fx.Engine();
        var d1 = new KvLinkDocument("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10", "A", id1, keep1);
        var d2 = new KvLinkDocument("w50 w51 w52 w53 w54 w55 w56 w57", "B", id2, keep2);
        string e1 = await engine.PrecomputeAsync(d1), e2 = await engine.PrecomputeAsync(d2);
        Assert.NotEqual(e1, e2);
        var l1 = await engine.BuildLayoutAsync("q?", [e1], 1);
        var l2 = await engine.BuildLayoutAsync("q?", [e2], 1);
        Assert.NotEqual(l1.Tokens, l2.Tokens);
    }

    [Fact]
    public void Document_ids_are_one_to_one_over_ids_with_tildes_and_fractions()
    {
        using var engine = fx.Engine();
        var rng = new Random(3);
        var seen = new Dictionary<string, (string, double)>();
        string[] parts = ["~", "~~", "keep", "0.5", "x", "~keep0.5", "~keep1"];
        double[] fractions = [1.0, 0.5, 0.25];
        for (int i = 0; i < 3000; i++)
        {
            string id = string.Concat(Enumerable.Range(0, rng.Next(1, 5)).Select(_ => parts[rng.Next(parts.Length)]));
            double f = fractions[rng.Next(fractions.Length)];
            string result = engine.DocumentId(new KvLinkDocument("t", null, id, f));
            if (seen.TryGetValue(result, out var earlier)) Assert.Equal(earlier, (id, f));
            else seen[result] = (id, f);
        }
    }

    public static TheoryData<string> Tampering => ["kv_heads x2", "head_dim / 2", "3000 tokens", "layers - 1", "dtype", "shuffled tokens", "NaN", "infinity", "other text"];

    [Theory]
    [MemberData(nameof(Tampering))]
    public async Task A_stored_entry_that_does_not_belong_to_the_document_is_a_miss_and_is_recomputed(string tampering)
    {
        var store = new CountingStore();
        await using var engine = fx.Engine(store: store);
        var doc = new KvLinkDocument("w3 w14 w15 w92 w65 w35 w89 w79", "Pi", "pi");
        string id = await engine.PrecomputeAsync(doc);
        var key = engine.CacheKey(id, 0);
        using (var good = await store.GetAsync(key))
            await store.PutAsync(key, Tamper(good!, tampering));
        int puts = store.Puts;

        var answer = await engine.GenerateAsync("q?", [id], Greedy);
        Assert.Equal(puts + 1, store.Puts); // rejected, encoded again and stored
        Assert.Equal(await CleanAnswer(doc, "pi"), answer.TokenIds);
        using var repaired = await store.GetAsync(key);
        Assert.True(CacheEntryCheck.AllFinite(repaired!.Keys));
        Assert.Equal(fx.Model.Config.NumKeyValueHeads, repaired.Keys.shape[1]);
    }

    private DocumentKvCache Tamper(DocumentKvCache e, string how)
    {
        var k = e.Keys.clone();
        var v = e.Values.clone();
        var tokens = e.TokenIds.ToArray();
        string text = e.Text;
        switch (how)
        {
            case "kv_heads x2": k = cat([k, k], 1); v = cat([v, v], 1); break;
            case "head_dim / 2": k = k[.., .., .., ..(int)(k.shape[3] / 2)].contiguous(); v = v[.., .., .., ..(int)(v.shape[3] / 2)].contiguous(); break;
            case "3000 tokens":
                k = k[.., .., ..1, ..].expand(k.shape[0], k.shape[1], 3000, k.shape[3]).contiguous();
                v = v[.., .., ..1, ..].expand(v.shape[0], v.shape[1], 3000, v.shape[3]).contiguous();
                tokens = [.. Enumerable.Repeat(tokens[0], 3000)];
                break;
            case "layers - 1": k = k[1..].contiguous(); v = v[1..].contiguous(); break;
            case "dtype": k = k.to(ScalarType.Float64); v = v.to(ScalarType.Float64); break;
            case "shuffled tokens": Array.Reverse(tokens); break;
            case "NaN": k[0, 0, 0, 0] = float.NaN; break;
            case "infinity": v[1, 1, 2, 3] = float.PositiveInfinity; break;
            case "other text": text += " w1"; break;
        }
        return new DocumentKvCache(e.DocumentId, e.Slot, tokens, k, v, e.ModelFingerprint, e.PromptFormat, e.Title, text, e.Tenant, e.Rope, e.KeepFraction);
    }

    [Fact]
    public async Task MaxNewTokens_int_MaxValue_generates_to_the_end_of_the_context()
    {
        await using var engine = fx.Engine();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(4, 5));
        var layout = await engine.BuildLayoutAsync("q?", [id], 1);
        var r = await engine.GenerateAsync("q?", [id], new KvLinkGenerationOptions { MaxNewTokens = int.MaxValue, StopTokenIds = [] });
        Assert.Equal(FinishReason.Length, r.FinishReason);
        Assert.Equal(fx.Model.Config.MaxPositionEmbeddings - layout.Length, r.TokenIds.Count);
    }

    [Theory]
    [InlineData(1e-38f)]
    [InlineData(float.Epsilon)]
    [InlineData(1e-6f)]
    public async Task A_vanishing_temperature_decodes_like_greedy(float temperature)
    {
        await using var engine = fx.Engine();
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(6, 7));
        var greedy = await engine.GenerateAsync("q?", [id], Greedy);
        var cold = await engine.GenerateAsync("q?", [id], Greedy with { Temperature = temperature, Seed = 1 });
        Assert.Equal(greedy.TokenIds, cold.TokenIds);
    }

    [Fact]
    public void Sampling_at_tiny_temperatures_above_the_greedy_threshold_stays_finite_and_picks_the_best()
    {
        var rng = new Random(9);
        for (int trial = 0; trial < 50; trial++)
        {
            var logits = Enumerable.Range(0, 500).Select(_ => (float)(rng.NextDouble() * 200 - 100)).ToArray();
            int best = Array.IndexOf(logits, logits.Max());
            var sampler = new TokenSampler(new GenerationOptions { Temperature = 2e-5f, Seed = trial });
            using var t = tensor(logits);
            Assert.Equal(best, sampler.Next(t));
        }
    }

    [Fact]
    public async Task A_prompt_that_cannot_fit_is_refused_before_any_document_is_encoded()
    {
        var store = new CountingStore();
        await using var engine = new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 0, PromptFormat = fx.Format, DType = ComputeDType.Float32 }, store);
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(8, 12));
        int puts = store.Puts;
        var e = await Assert.ThrowsAsync<ArgumentException>(() => engine.GenerateAsync("q?", Enumerable.Repeat(id, 120).ToArray()));
        Assert.Contains("positions", e.Message);
        Assert.Equal(puts, store.Puts); // no slot was encoded or stored
    }

    /// <summary>The greedy answer of a clean engine on a fresh store that encodes <paramref name="doc"/> itself.</summary>
    private async Task<IReadOnlyList<int>> CleanAnswer(KvLinkDocument doc, string id)
    {
        await using var fresh = fx.Engine(store: new MemoryKvCacheStore());
        string freshId = await fresh.PrecomputeAsync(doc with { Id = id });
        return (await fresh.GenerateAsync("q?", [freshId], Greedy)).TokenIds;
    }
}
