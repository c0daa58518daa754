using KVLink.TestSupport;
using KVLink.Core.Caching;
using KVLink.Core.Compression;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tests.Engine;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Compression;

/// <summary>Compression wired into PrecomputeAsync: ids and keys per fraction, header kept, oracle equivalence, stored metadata.</summary>
public sealed class CompressedPrecomputeTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkDocument Kesh = new("Kesh is a small island with about 900 people; it exports dried fish and wool to Veloria twice a week.", "Kesh");

    private KvLinkEngine Engine(double keep = 1.0, int links = 1, ITokenScorer? scorer = null) =>
        new(fx.Model, fx.Tokenizer, new KvLinkOptions
        {
            LinkTokens = links, PromptFormat = fx.Format, DType = ComputeDType.Float32,
            Compression = new DocumentCompressionOptions { KeepFraction = keep, Window = 16, Context = 8, Scorer = scorer },
        });

    [Theory]
    [InlineData(0.25)]
    [InlineData(0.5)]
    [InlineData(0.75)]
    public async Task The_cache_holds_the_header_and_the_kept_fraction_and_equals_encoding_those_tokens_directly(double keep)
    {
        await using var engine = Engine(keep);
        string id = await engine.PrecomputeAsync(Kesh);
        Assert.EndsWith($"~keep{keep.ToString(System.Globalization.CultureInfo.InvariantCulture)}", id);
        using var entry = await engine.Store.GetAsync(engine.CacheKey(id, 0));
        Assert.NotNull(entry);
        Assert.Equal(keep, entry!.KeepFraction);

        var full = fx.Format.Document(fx.Tokenizer, Kesh, 0);
        int header = fx.Format.DocumentHeaderLength(fx.Tokenizer, Kesh, 0);
        Assert.True(header >= 8, $"header of {header} tokens");
        Assert.Equal(full.Take(header), entry.TokenIds.Take(header));       // the header survives whole
        Assert.Equal(full[^1], entry.TokenIds[^1]);                          // so does the terminator
        int body = full.Count - header, keptBody = entry.Length - header;
        Assert.InRange(keptBody, (int)Math.Ceiling(keep * body), (int)Math.Ceiling(keep * body) + 1);
        // The kept tokens are a subsequence of the document, chosen by the same compressor the engine uses.
        var expected = new DocumentCompressor(new SelfInformation(fx.Model, 16, 8)).Compress(full, keep, header, [full.Count - 1]);
        Assert.Equal(expected, entry.TokenIds);

        // The stored cache is exactly the encoding of the compressed token sequence.
        var (k, v) = DocumentEncoder.Encode(fx.Model, entry.TokenIds);
        using (k) using (v)
        {
            Assert.True(k.allclose(entry.Keys, rtol: 1e-5, atol: 1e-6));
            Assert.True(v.allclose(entry.Values, rtol: 1e-5, atol: 1e-6));
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    public async Task Compressed_documents_pass_the_single_pass_oracle_in_every_slot(int links)
    {
        await using var engine = Engine(0.5, links);
        var ids = new List<string>();
        for (int i = 0; i < 4; i++) ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(i, 6 + 3 * i)));
        ids.Reverse(); // slots 1-3 are encoded on demand from the same kept body
        var greedy = new KvLinkGenerationOptions { MaxNewTokens = 6, StopTokenIds = [] };
        var result = await engine.GenerateAsync("Which word comes first?", ids, greedy);

        var layout = await engine.BuildLayoutAsync("Which word comes first?", ids, links);
        for (int slot = 0; slot < ids.Count; slot++)
        {
            using var entry = await engine.Store.GetAsync(engine.CacheKey(ids[slot], slot));
            Assert.Equal(layout.Documents[slot].TokenIds, entry!.TokenIds);
        }
        using var oracleCache = new AttentionCache(fx.Model.Config, layout.Length + 6, ScalarType.Float32);
        var last = SinglePassForward.Forward(fx.Model, layout, oracleCache, lastOnly: true);
        var (expected, _) = new DecodeLoop(fx.Model, oracleCache, greedy, new HashSet<int>()).Collect(fx.Model, oracleCache, last, layout.Length, System.Diagnostics.Stopwatch.StartNew(), null, default);
        Assert.Equal(expected, result.TokenIds);

        // Full prefill of the same ids reads the same compressed tokens.
        var prefill = await engine.GenerateAsync("Which word comes first?", ids, greedy with { Mode = ContextMode.FullPrefill });
        Assert.Equal(layout.Length, prefill.Usage.PromptTokens);
    }

    [Fact]
    public async Task One_document_is_cached_at_several_fractions_under_different_keys_and_deterministically()
    {
        await using var engine = Engine();
        string whole = await engine.PrecomputeAsync(Kesh);
        string half = await engine.PrecomputeAsync(Kesh with { KeepFraction = 0.5 });
        string quarter = await engine.PrecomputeAsync(Kesh with { KeepFraction = 0.25 });
        Assert.Equal(3, new[] { whole, half, quarter }.Distinct().Count());
        Assert.DoesNotContain("~keep", whole);
        Assert.Equal(3, ((MemoryKvCacheStore)engine.Store).Count);
        using var a = await engine.Store.GetAsync(engine.CacheKey(half, 0));
        using var b = await engine.Store.GetAsync(engine.CacheKey(quarter, 0));
        Assert.True(a!.Length > b!.Length);

        // Another engine on the same model: same id, same kept tokens. A caller's own id gets the fraction appended.
        await using var other = Engine(0.5);
        Assert.Equal(half, await other.PrecomputeAsync(Kesh));
        using var c = await other.Store.GetAsync(other.CacheKey(half, 0));
        Assert.Equal(a.TokenIds, c!.TokenIds);
        Assert.Equal("kesh~keep0.5", await other.PrecomputeAsync(Kesh with { Id = "kesh" }));

        // A different scorer is a different cache.
        await using var random = Engine(0.5, scorer: new RandomTokenScorer(1));
        Assert.NotEqual(half, await random.PrecomputeAsync(Kesh));
    }

    [Fact]
    public async Task The_kept_fraction_survives_serialisation_alone_and_with_int8()
    {
        await using var engine = Engine(0.5);
        string id = await engine.PrecomputeAsync(Kesh);
        using var entry = await engine.Store.GetAsync(engine.CacheKey(id, 0));
        foreach (var quantisation in new[] { KvCacheQuantization.None, KvCacheQuantization.Int8PerChannel })
        {
            byte[] bytes = KvCacheFormat.Serialize(entry!, quantisation);
            Assert.Equal("0.5", KvCacheFormat.ReadMetadata(bytes)["kvlink.keep_fraction"]);
            using var back = KvCacheFormat.Deserialize(bytes);
            Assert.Equal(0.5, back.KeepFraction);
            Assert.Equal(entry!.TokenIds, back.TokenIds);
        }
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(-0.5)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public async Task Bad_fractions_are_rejected_with_a_clear_error(double keep)
    {
        var options = new KvLinkOptions { Compression = new DocumentCompressionOptions { KeepFraction = keep } };
        var e = Assert.ThrowsAny<ArgumentException>(options.Validate);
        Assert.Contains("kept fraction", e.Message);
        await using var engine = Engine();
        var d = await Assert.ThrowsAnyAsync<ArgumentException>(() => engine.PrecomputeAsync(Kesh with { KeepFraction = keep }));
        Assert.Contains("kept fraction", d.Message);
    }
}
