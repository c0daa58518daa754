using KVLink.TestSupport;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Engine;

/// <summary>The engine (precompute + re-rotate + link-token pass) equals the single-pass segment-mask forward.</summary>
public class KvLinkEquivalenceTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    public static TheoryData<int, int> Cases => new() { { 1, 0 }, { 1, 5 }, { 3, 1 }, { 4, 5 }, { 10, 0 }, { 10, 1 }, { 10, 5 } };

    private static int Words(int i) => 2 + (i * 7) % 11; // varied lengths: 2..12 words

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Logits_of_every_computed_token_and_greedy_output_equal_the_single_pass_oracle(int documents, int k)
    {
        await using var engine = fx.Engine(linkTokens: k, slotPolicy: SlotPolicy.Exact);
        var ids = new List<string>();
        for (int i = 0; i < documents; i++) ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(i, Words(i))));
        ids.Reverse(); // documents land in slots they were not precomputed for: under Exact those are encoded on demand
        const string question = "Which word comes first?";

        var greedy = new KvLinkGenerationOptions { MaxNewTokens = 10, StopTokenIds = [] };
        var result = await engine.GenerateAsync(question, ids, greedy);
        Assert.Equal(10, result.TokenIds.Count);

        var layout = await engine.BuildLayoutAsync(question, ids, k);
        using var oracle = SinglePassForward.Forward(fx.Model, layout);
        long[] computed = layout.ComputedPositions();
        using var oracleRows = oracle.index_select(1, tensor(computed));

        var entries = new List<(Tensor, Tensor)>();
        for (int slot = 0; slot < ids.Count; slot++)
        {
            var entry = await engine.Store.GetAsync(engine.CacheKey(ids[slot], slot));
            Assert.NotNull(entry);
            Assert.Equal(layout.Documents[slot].TokenIds, entry!.TokenIds);
            entries.Add((entry.Keys, entry.Values));
        }
        using var cache = new AttentionCache(fx.Model.Config, layout.Length, ScalarType.Float32);
        DocumentPlacement.Place(fx.Model, cache, layout, entries);
        using var linked = LinkTokenPass.Forward(fx.Model, cache, layout, lastOnly: false);

        double err = (linked - oracleRows).abs().max().item<float>() / oracleRows.abs().max().item<float>();
        Assert.True(err < 1e-4, $"relative error {err:E2}");

        // Greedy decoding from the oracle's cache gives the engine's tokens.
        using var oracleCache = new AttentionCache(fx.Model.Config, layout.Length + 10, ScalarType.Float32);
        var last = SinglePassForward.Forward(fx.Model, layout, oracleCache, lastOnly: true);
        var loop = new DecodeLoop(fx.Model, oracleCache, greedy, new HashSet<int>());
        var (expected, _) = loop.Collect(fx.Model, oracleCache, last, layout.Length, System.Diagnostics.Stopwatch.StartNew(), null, default);
        Assert.Equal(expected, result.TokenIds);
        Assert.Equal(layout.DocumentTokenCount, result.Usage.CachedTokens + (result.Usage.ComputedTokens - computed.Length));
    }

    [Fact]
    public async Task A_re_rotated_cached_key_equals_the_key_computed_at_its_global_position()
    {
        await using var engine = fx.Engine(linkTokens: 1);
        var ids = new[] { await engine.PrecomputeAsync(CheckpointFixture.Doc(1, 9)), await engine.PrecomputeAsync(CheckpointFixture.Doc(2, 6)) };
        var layout = await engine.BuildLayoutAsync("q?", ids, 1);
        var doc = layout.Documents[1];
        var (keys, values) = DocumentEncoder.Encode(fx.Model, doc.TokenIds);
        using var offsets = tensor(Enumerable.Repeat((long)doc.Start, doc.Length).ToArray());
        using var shifted = RopeRerotation.Shift(keys, offsets, fx.Model.Rope);

        using var cache = new AttentionCache(fx.Model.Config, layout.Length, ScalarType.Float32);
        SinglePassForward.Forward(fx.Model, layout, cache, lastOnly: true).Dispose();
        var (direct, directValues) = cache.Export(doc.Start, doc.Length);
        Assert.True(doc.Start > 10);
        double keyErr = (shifted - direct).abs().max().item<float>() / direct.abs().max().item<float>();
        Assert.True(keyErr < 1e-5, $"key relative error {keyErr:E2}");
        Assert.True((keys - direct).abs().max().item<float>() > 1e-2, "an un-rotated key must differ, else the test proves nothing");
        Assert.True((values - directValues).abs().max().item<float>() < 1e-5);
        keys.Dispose(); values.Dispose(); direct.Dispose(); directValues.Dispose();
    }

    [Fact]
    public async Task Link_tokens_attend_to_every_earlier_document()
    {
        await using var engine = fx.Engine(linkTokens: 1);
        var ids = new[] { await engine.PrecomputeAsync(CheckpointFixture.Doc(3, 8)), await engine.PrecomputeAsync(CheckpointFixture.Doc(4, 8)) };
        var layout = await engine.BuildLayoutAsync("q?", ids, 1);
        await engine.GenerateAsync("q?", ids, new KvLinkGenerationOptions { MaxNewTokens = 1 }); // its caches (slot 0 keys under the default SlotPolicy.Shared)
        int link = layout.Documents[1].Start + layout.Documents[1].Length; // link token of slot 1
        Assert.Equal(0, layout.Segments[link]);

        var entries = new List<(Tensor, Tensor)>();
        for (int slot = 0; slot < 2; slot++)
        {
            var e = (await engine.Store.GetAsync(engine.CacheKey(ids[slot], slot)))!;
            entries.Add((e.Keys, e.Values));
        }
        using var cache = new AttentionCache(fx.Model.Config, layout.Length, ScalarType.Float32);
        DocumentPlacement.Place(fx.Model, cache, layout, entries);
        using var linked = LinkTokenPass.Forward(fx.Model, cache, layout, lastOnly: false);
        int row = Array.IndexOf(layout.ComputedPositions(), (long)link);
        using var engineRow = linked[0, row];

        // Oracle where this link token may not see document 1 (slot 0): must differ from what the engine computes.
        var segments = layout.Segments;
        using var restricted = tensor(Enumerable.Range(0, layout.Length * layout.Length).Select(i =>
        {
            int q = i / layout.Length, kk = i % layout.Length;
            bool visible = SegmentMask.Visible(segments, q, kk);
            return q == link ? visible && segments[kk] != 1 : visible;
        }).ToArray(), [layout.Length, layout.Length]);
        long[] positions = [.. Enumerable.Range(0, layout.Length).Select(i => (long)i)];
        using var ids0 = tensor(layout.Tokens.Select(t => (long)t).ToArray(), [1, layout.Length]);
        using var blind = fx.Model.Forward(ids0, fx.Model.Step(positions, restricted, null));
        using var full = SinglePassForward.Forward(fx.Model, layout);

        double scale = full[0, link].abs().max().item<float>();
        Assert.True((engineRow - full[0, link]).abs().max().item<float>() / scale < 1e-4);
        Assert.True((engineRow - blind[0, link]).abs().max().item<float>() / scale > 1e-3,
            "the link token's output must depend on the earlier document");
    }

    [Fact]
    public async Task Full_prefill_mode_equals_standard_generation()
    {
        await using var engine = fx.Engine(linkTokens: 5, mode: ContextMode.FullPrefill);
        var ids = new[] { await engine.PrecomputeAsync(CheckpointFixture.Doc(5, 7)), await engine.PrecomputeAsync(CheckpointFixture.Doc(6, 4)) };
        var options = new KvLinkGenerationOptions { MaxNewTokens = 8, StopTokenIds = [] };
        var result = await engine.GenerateAsync("What?", ids, options);
        var layout = await engine.BuildLayoutAsync("What?", ids, 5);
        var standard = new LlamaGenerator(fx.Model, fx.Tokenizer).Generate(layout.Tokens, new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] });
        Assert.Equal(standard.TokenIds, result.TokenIds);
        Assert.Equal(standard.Text, result.Text);
        Assert.Equal(layout.Length, result.Usage.ComputedTokens);
        Assert.Equal(0, result.Usage.CachedTokens);
    }

    [Fact]
    public async Task Parallel_requests_give_the_sequential_answers()
    {
        await using var engine = fx.Engine(linkTokens: 1);
        var ids = new List<string>();
        for (int i = 0; i < 4; i++) ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(20 + i, 5)));
        var requests = Enumerable.Range(0, 6).Select(r => (Query: $"question {r}?", Docs: ids.Skip(r % 3).Take(2).ToArray())).ToList();
        var options = new KvLinkGenerationOptions { MaxNewTokens = 6, StopTokenIds = [] };
        var sequential = new List<IReadOnlyList<int>>();
        foreach (var (q, d) in requests) sequential.Add((await engine.GenerateAsync(q, d, options)).TokenIds);
        var parallel = await Task.WhenAll(requests.Select(r => Task.Run(() => engine.GenerateAsync(r.Query, r.Docs, options))));
        for (int i = 0; i < requests.Count; i++) Assert.Equal(sequential[i], parallel[i].TokenIds);
    }

    [Fact]
    public async Task Concurrent_precomputes_of_one_document_compute_it_once()
    {
        var store = new CountingStore();
        await using var engine = fx.Engine(linkTokens: 1, store: store);
        var doc = CheckpointFixture.Doc(40, 12);
        var ids = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => engine.PrecomputeAsync(doc))));
        Assert.Single(ids.Distinct());
        Assert.Equal(1, store.Puts);
        await engine.PrecomputeAsync(doc);
        Assert.Equal(1, store.Puts);
    }

    [Fact]
    public async Task Streaming_deltas_concatenate_to_the_result_text()
    {
        await using var engine = fx.Engine(linkTokens: 1);
        var ids = new[] { await engine.PrecomputeAsync(CheckpointFixture.Doc(7, 5)) };
        var options = new KvLinkGenerationOptions { MaxNewTokens = 12, StopTokenIds = [] };
        var text = new System.Text.StringBuilder();
        GenerationResult? final = null;
        await foreach (var update in engine.GenerateStreamingAsync("Stream?", ids, options))
        {
            text.Append(update.Delta);
            final ??= update.Result;
        }
        Assert.NotNull(final);
        Assert.Equal(final!.Text, text.ToString());
        Assert.Equal((await engine.GenerateAsync("Stream?", ids, options)).TokenIds, final.TokenIds);
    }
}
