using KVLink.Core.Redis;
using KVLink.Core.Caching;
using KVLink.Core.Tests.Caching;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// Hostile document ids and tenant names — path traversal, absolute paths, NUL, very long, Unicode
/// look-alikes and normalisation variants — on every store tier: nothing is written outside the file store's
/// directory, each id round-trips to exactly its own entry, and no two distinct ids or tenants collide.
/// </summary>
[Collection(GarnetCollection.Name)]
public sealed class HostileIdTests(GarnetFixture garnet) : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string[] HostileIds =
    [
        "../../../../etc/passwd", "..\\..\\windows\\system32", "/etc/passwd", "C:\\Windows\\evil", "a/../../b", ".", "..", "~",
        "doc\0hidden", "\0", new string('x', 100_000), "ａｄｍｉｎ", "admin", "café", "cafe\u0301", "Ⅸ", "IX",
        "doc\u200b", "doc", "DOC", "doc ", "кириллица-а", "kirillica-a", "🙂/../🙂", "%2e%2e%2f", "con", "nul.kvc", "*", "?",
    ];

    private IKvCacheStore Create(string kind, string tag) => kind switch
    {
        "memory" => new MemoryKvCacheStore(),
        "file" => new FileKvCacheStore(Path.Combine(_dir.Path, "root", "store-" + tag)),
        "redis" => new RedisKvCacheStore(garnet.Connection, new() { KeyPrefix = "hostile-" + tag + Guid.NewGuid().ToString("N")[..8] }),
        _ => new TieredKvCacheStore(new MemoryKvCacheStore(), new FileKvCacheStore(Path.Combine(_dir.Path, "root", "tier-" + tag)),
            new RedisKvCacheStore(garnet.Connection, new() { KeyPrefix = "hostile-t-" + tag + Guid.NewGuid().ToString("N")[..8] })),
    };

    [Theory]
    [InlineData("memory")]
    [InlineData("file")]
    [InlineData("redis")]
    [InlineData("tiered")]
    public async Task Hostile_ids_and_tenants_stay_inside_the_store_and_never_collide(string kind)
    {
        var store = Create(kind, kind);
        string root = Path.Combine(_dir.Path, "root");
        var keys = new List<KvCacheKey>();
        // Every id under two tenants, and the hostile strings as tenants too.
        foreach (string id in HostileIds)
        {
            keys.Add(CacheTestData.Key(id, tenant: "tenant-a"));
            keys.Add(CacheTestData.Key(id, tenant: "tenant-b"));
        }
        foreach (string tenant in HostileIds.Take(12)) keys.Add(CacheTestData.Key("same-doc", tenant: tenant));
        Assert.Equal(keys.Count, keys.Select(k => k.Hash).Distinct().Count());

        for (int i = 0; i < keys.Count; i++)
        {
            using var entry = CacheTestData.Entry(keys[i], tokens: 2, seed: i + 1);
            await store.PutAsync(keys[i], entry);
        }
        // Each key reads back exactly its own entry (seed identifies it), never a look-alike's.
        for (int i = 0; i < keys.Count; i++)
        {
            using var expected = CacheTestData.Entry(keys[i], tokens: 2, seed: i + 1);
            using var got = await store.GetAsync(keys[i]);
            Assert.NotNull(got);
            CacheTestData.AssertSame(expected, got!);
        }
        Assert.Equal(0, store.Statistics.Rejected);

        // Nothing escaped: every file is a hashed name directly inside a store directory.
        if (Directory.Exists(root))
            foreach (string file in Directory.GetFiles(root, "*", SearchOption.AllDirectories))
            {
                Assert.Equal(Path.GetFullPath(root), Path.GetFullPath(Path.GetDirectoryName(Path.GetDirectoryName(file))!));
                Assert.Matches("^[0-9a-f]{16}-[0-9a-f]{16}-[0-9a-f]{16}-[0-9a-f]{32}\\.kvc$", Path.GetFileName(file));
            }
        Assert.Empty(Directory.GetFiles(_dir.Path, "*", SearchOption.TopDirectoryOnly));

        // Removing a hostile id of one tenant removes that entry only.
        var victim = CacheTestData.Key("../../../../etc/passwd", tenant: "tenant-a");
        Assert.True(await store.RemoveAsync(victim));
        Assert.Null(await store.GetAsync(victim));
        using (var other = await store.GetAsync(CacheTestData.Key("../../../../etc/passwd", tenant: "tenant-b"))) Assert.NotNull(other);
        Assert.Equal(1, await store.InvalidateAsync(new KvCacheScope("tenant-b", null, "cafe\u0301")));
        using (var nfc = await store.GetAsync(CacheTestData.Key("café", tenant: "tenant-b"))) Assert.NotNull(nfc);
    }

    [Fact]
    public void Key_parts_that_are_empty_are_refused_but_any_other_string_is_just_hashed()
    {
        Assert.ThrowsAny<ArgumentException>(() => new KvCacheKey("", "m", "f", "d", 0));
        Assert.ThrowsAny<ArgumentException>(() => new KvCacheKey("t", "m", "f", "", 0));
        Assert.ThrowsAny<ArgumentException>(() => new KvCacheKey("t", "m", "f", "d", -1));
        // Length-prefixed hashing: moving a separator between parts gives another key.
        Assert.NotEqual(new KvCacheKey("a/b", "m", "f", "c", 0).Hash, new KvCacheKey("a", "m", "f", "b/c", 0).Hash);
        Assert.NotEqual(new KvCacheKey("a\0", "m", "f", "d", 0).Hash, new KvCacheKey("a", "m", "f", "\0d", 0).Hash);
    }
}
