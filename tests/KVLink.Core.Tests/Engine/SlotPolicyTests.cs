using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// One cache per document served in any slot: <see cref="SlotPolicy.Shared"/> for the numbered header, and the
/// slot-free header, whose single cache is exact in every slot. Each is checked against the single-pass segment-mask
/// forward over the prompt the engine builds (float32), with documents precomputed once and queried in shuffled slots.
/// </summary>
public class SlotPolicyTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private const string Question = "Which word comes first?";
    private static readonly int[] Shuffle = [3, 0, 5, 1, 4, 2];
    private static readonly int[] Reshuffle = [5, 2, 4, 0, 3, 1];
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 8, StopTokenIds = [] };

    private static async Task<List<string>> PrecomputeSix(KvLinkEngine engine)
    {
        var ids = new List<string>();
        for (int i = 0; i < 6; i++) ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(i, 3 + (i * 5) % 9)));
        return ids;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public async Task Shared_precomputes_once_and_serves_every_slot_computing_only_segment_0_tokens(int k)
    {
        await using var engine = fx.Engine(linkTokens: k, slotPolicy: SlotPolicy.Shared);
        var ids = await PrecomputeSix(engine);
        Assert.Equal(6, engine.Store.Statistics.Entries);

        foreach (var order in new[] { Shuffle, Reshuffle })
        {
            var slots = order.Select(i => ids[i]).ToList();
            var result = await engine.GenerateAsync(Question, slots, Greedy);
            var layout = await engine.BuildLayoutAsync(Question, slots, k);
            // Every document carries its slot-0 header ("Document [1]"), whatever slot it sits in: that is its one cache.
            for (int slot = 0; slot < slots.Count; slot++)
                Assert.Equal(fx.Format.Document(fx.Tokenizer, CheckpointFixture.Doc(order[slot], 3 + (order[slot] * 5) % 9), 0), layout.Documents[slot].TokenIds);
            Assert.Equal(layout.ComputedPositions(layout.PrefixLength).Length, result.Usage.ComputedTokens);
            Assert.Equal(layout.DocumentTokenCount + layout.PrefixLength, result.Usage.CachedTokens);
            Assert.Equal(6, engine.Store.Statistics.Entries);
            Assert.Equal(0, engine.CacheKey(slots[^1], slots.Count - 1).Slot);
            AssertEqualsOracle(engine, layout, slots, result);
        }
    }

    [Fact]
    public async Task Exact_keeps_a_cache_per_slot_with_the_slot_s_own_header()
    {
        await using var engine = fx.Engine(linkTokens: 1, slotPolicy: SlotPolicy.Exact);
        var ids = await PrecomputeSix(engine);
        Assert.Equal(6, engine.Store.Statistics.Entries);
        var slots = Shuffle.Select(i => ids[i]).ToList();
        var result = await engine.GenerateAsync(Question, slots, Greedy);
        var layout = await engine.BuildLayoutAsync(Question, slots, 1);
        // Slot 0's document was precomputed there; the other five are encoded now, at their own slots, and stored.
        int onDemand = layout.Documents.Skip(1).Sum(d => d.Length);
        Assert.Equal(layout.ComputedPositions(layout.PrefixLength).Length + onDemand, result.Usage.ComputedTokens);
        Assert.Equal(11, engine.Store.Statistics.Entries);
        Assert.Equal(fx.Format.Document(fx.Tokenizer, CheckpointFixture.Doc(Shuffle[4], 3 + (Shuffle[4] * 5) % 9), 4), layout.Documents[4].TokenIds);
        Assert.Equal((await engine.BuildLayoutAsync(Question, slots, 1, ContextMode.FullPrefill)).Tokens, layout.Tokens);
        AssertEqualsOracle(engine, layout, slots, result);
    }

    [Theory]
    [InlineData(SlotPolicy.Shared, 1)]
    [InlineData(SlotPolicy.Exact, 5)]
    public async Task A_slot_free_header_has_one_exact_cache_per_document_in_every_slot(SlotPolicy policy, int k)
    {
        var format = fx.Format.WithSlotFreeHeader();
        Assert.False(format.DocumentDependsOnSlot);
        Assert.NotEqual(fx.Format.Name, format.Name);
        await using var engine = fx.Engine(linkTokens: k, slotPolicy: policy, format: format);
        var ids = await PrecomputeSix(engine);
        Assert.Equal(6, engine.Store.Statistics.Entries);

        foreach (var order in new[] { Shuffle, Reshuffle })
        {
            var slots = order.Select(i => ids[i]).ToList();
            var result = await engine.GenerateAsync(Question, slots, Greedy);
            var layout = await engine.BuildLayoutAsync(Question, slots, k);
            // The prompt is the model's own prompt for these slots, token for token (what full prefill reads): nothing is approximated.
            Assert.Equal((await engine.BuildLayoutAsync(Question, slots, k, ContextMode.FullPrefill)).Tokens, layout.Tokens);
            Assert.Equal(layout.ComputedPositions(layout.PrefixLength).Length, result.Usage.ComputedTokens);
            Assert.Equal(6, engine.Store.Statistics.Entries);
            AssertEqualsOracle(engine, layout, slots, result);
        }
    }

    /// <summary>The engine's logits at every computed position and its greedy tokens equal the single-pass forward over <paramref name="layout"/>.</summary>
    private void AssertEqualsOracle(KvLinkEngine engine, PromptLayout layout, IReadOnlyList<string> slots, GenerationResult result)
    {
        using var scope = NewDisposeScope();
        var oracle = SinglePassForward.Forward(fx.Model, layout);
        var oracleRows = oracle.index_select(1, tensor(layout.ComputedPositions()));
        var entries = new List<(Tensor, Tensor)>();
        for (int slot = 0; slot < slots.Count; slot++)
        {
            var entry = engine.Store.GetAsync(engine.CacheKey(slots[slot], slot)).AsTask().GetAwaiter().GetResult();
            Assert.NotNull(entry);
            Assert.Equal(layout.Documents[slot].TokenIds, entry!.TokenIds);
            entries.Add((entry.Keys, entry.Values));
        }
        using var cache = new AttentionCache(fx.Model.Config, layout.Length, ScalarType.Float32);
        DocumentPlacement.Place(fx.Model, cache, layout, entries);
        var linked = LinkTokenPass.Forward(fx.Model, cache, layout, lastOnly: false);
        double err = (linked - oracleRows).abs().max().item<float>() / oracleRows.abs().max().item<float>();
        Assert.True(err < 1e-4, $"relative error {err:E2}");

        using var oracleCache = new AttentionCache(fx.Model.Config, layout.Length + Greedy.MaxNewTokens, ScalarType.Float32);
        var last = SinglePassForward.Forward(fx.Model, layout, oracleCache, lastOnly: true);
        var (expected, _) = new DecodeLoop(fx.Model, oracleCache, Greedy, new HashSet<int>()).Collect(fx.Model, oracleCache, last, layout.Length, System.Diagnostics.Stopwatch.StartNew(), null, default);
        Assert.Equal(expected, result.TokenIds);
    }
}
