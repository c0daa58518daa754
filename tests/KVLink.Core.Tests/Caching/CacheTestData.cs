using KVLink.Core.Caching;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Caching;

/// <summary>Small synthetic document caches for store tests.</summary>
internal static class CacheTestData
{
    public const string Model = "model-a", Format = "kvlink-llama3";
    public static readonly KvCacheRope Rope = new(16, 10000, null);

    public static KvCacheKey Key(string doc = "doc-1", string tenant = "tenant-a", int slot = 0, string model = Model) => new(tenant, model, Format, doc, slot);

    public static DocumentKvCache Entry(KvCacheKey key, int tokens = 7, ScalarType dtype = ScalarType.Float32, int seed = 1, int layers = 2)
    {
        var gen = new TorchSharp.torch.Generator((ulong)seed);
        var k = randn([layers, 2, tokens, 16], generator: gen).to(dtype);
        var v = randn([layers, 2, tokens, 16], generator: gen).to(dtype);
        var ids = Enumerable.Range(0, tokens).Select(i => (i * 37 + seed) % 1000).ToArray();
        return new DocumentKvCache(key.DocumentId, key.Slot, ids, k, v, key.ModelFingerprint, key.PromptFormat, $"Title {seed}", $"Text of {key.DocumentId} \"quoted\" {seed}", key.Tenant, Rope);
    }

    public static void AssertSame(DocumentKvCache expected, DocumentKvCache actual)
    {
        Assert.Equal(expected.Key, actual.Key);
        Assert.Equal(expected.TokenIds, actual.TokenIds);
        Assert.Equal(expected.Title, actual.Title);
        Assert.Equal(expected.Text, actual.Text);
        Assert.Equal(expected.Rope, actual.Rope);
        Assert.Equal(expected.Keys.dtype, actual.Keys.dtype);
        Assert.Equal(expected.Keys.shape, actual.Keys.shape);
        Assert.True(expected.Keys.equal(actual.Keys).all().item<bool>(), "keys differ");
        Assert.True(expected.Values.equal(actual.Values).all().item<bool>(), "values differ");
    }
}
