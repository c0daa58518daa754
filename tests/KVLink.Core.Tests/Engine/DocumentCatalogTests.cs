using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;
using KVLink.Core.Collections;

namespace KVLink.Core.Tests.Engine;

/// <summary>The engine's in-memory catalog of documents is bounded, and a document that falls out of it is still served.</summary>
public class DocumentCatalogTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    [Fact]
    public async Task The_catalog_keeps_at_most_its_capacity_and_forgotten_documents_are_read_back_from_the_store()
    {
        await using var engine = new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, DocumentCatalogCapacity = 3 });
        var ids = new List<string>();
        for (int i = 0; i < 10; i++)
        {
            ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(i, 4)));
            Assert.InRange(engine.CatalogCount, 1, 3);
        }
        var options = new KvLinkGenerationOptions { MaxNewTokens = 3, StopTokenIds = [] };
        var first = await engine.GenerateAsync("q?", [ids[0]], options); // long out of the catalog
        Assert.Equal(0, first.Usage.ComputedTokens - (first.Usage.PromptTokens - first.Usage.CachedTokens)); // accounting holds
        Assert.True(first.Usage.CachedTokens > 0);
        await using var fresh = new KvLinkEngine(fx.Model, fx.Tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32 });
        string again = await fresh.PrecomputeAsync(CheckpointFixture.Doc(0, 4));
        Assert.Equal(first.TokenIds, (await fresh.GenerateAsync("q?", [again], options)).TokenIds);
    }

    [Fact]
    public void The_least_recently_used_entry_goes_first()
    {
        var lru = new BoundedLru<string, int>(2);
        lru.Set("a", 1);
        lru.Set("b", 2);
        Assert.True(lru.TryGetValue("a", out _)); // a is now the most recent
        lru.Set("c", 3);
        Assert.False(lru.TryGetValue("b", out _));
        Assert.True(lru.TryGetValue("a", out int a) && a == 1);
        Assert.True(lru.TryGetValue("c", out int c) && c == 3);
        Assert.Equal(2, lru.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => new BoundedLru<string, int>(0));
    }

    [Fact]
    public void A_capacity_below_one_is_rejected_naming_the_option()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new KvLinkOptions { DocumentCatalogCapacity = 0 }.Validate());
        Assert.Contains(nameof(KvLinkOptions.DocumentCatalogCapacity), e.Message);
    }
}
