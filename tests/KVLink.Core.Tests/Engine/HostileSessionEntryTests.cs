using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// Stored session entries are untrusted (issue 28, item 3): one whose text claims a huge start made <c>ChatAsync</c>
/// allocate what it claimed (2,147,483,647: OutOfMemoryException; 400,000,000: 1.5 GB for one request). Every hostile
/// shape of the text is a miss, the answer is exact (the conversation is recomputed), and the request allocates no more
/// than an ordinary one, whatever the claim. Allocation is the least of several requests, since
/// <see cref="GC.GetTotalAllocatedBytes"/> counts every thread and other tests' bursts land in few of them.
/// </summary>
public sealed class HostileSessionEntryTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 4, Logprobs = true, ConversationId = "victim" };
    private const int Reads = 3;

    /// <summary>A memory store that remembers the last kept session written to it.</summary>
    private sealed class SessionRecordingStore : IKvCacheStore
    {
        public MemoryKvCacheStore Inner { get; } = new();
        public KvCacheStoreStatistics Statistics => Inner.Statistics;
        public (KvCacheKey Key, DocumentKvCache Entry)? LastSession { get; private set; }
        public ValueTask<DocumentKvCache?> GetAsync(KvCacheKey key, CancellationToken ct = default) => Inner.GetAsync(key, ct);
        public ValueTask PutAsync(KvCacheKey key, DocumentKvCache entry, CancellationToken ct = default)
        {
            if (key.DocumentId.StartsWith("~session~", StringComparison.Ordinal)) LastSession = (key, entry.Share());
            return Inner.PutAsync(key, entry, ct);
        }
        public ValueTask<bool> RemoveAsync(KvCacheKey key, CancellationToken ct = default) => Inner.RemoveAsync(key, ct);
        public ValueTask<bool> ContainsAsync(KvCacheKey key, CancellationToken ct = default) => Inner.ContainsAsync(key, ct);
        public ValueTask<long> InvalidateAsync(KvCacheScope scope, CancellationToken ct = default) => Inner.InvalidateAsync(scope, ct);
    }

    private KvLinkEngine Engine(IKvCacheStore store, long sessionBytes = 64L << 20) =>
        fixture.SessionEngine(sessionBytes, store, persist: sessionBytes > 0);

    public static TheoryData<string, string> HostileTexts() => new()
    {
        { "start int.MaxValue", "2147483647:1,2,3" },
        { "start 400,000,000", "400000000:1,2,3" },
        { "start negative", "-5:1,2,3" },
        { "start zero", "0:" },
        { "fewer ids than start", "{start}:1,2,3" },
        { "more ids than start", "{start}:{ids},7,7" },
        { "start beyond the model's context", "2047:{ctxids}" },
        { "token id beyond the vocabulary", "{start}:{badid}" },
        { "not a number", "{start}:{ids},x" },
        { "no colon", "{start}" },
    };

    [Theory]
    [MemberData(nameof(HostileTexts))]
    public async Task A_hostile_stored_session_is_a_miss_with_an_exact_answer_and_bounded_allocation(string name, string template)
    {
        var store = new SessionRecordingStore();
        string[] docs;
        GenerationResult first;
        using (var writer = Engine(store))
        {
            docs = await CheckpointFixture.PrecomputeDocs(writer, 2);
            first = await writer.ChatAsync([new ChatMessage(ChatRole.User, "Which document mentions w5?")], docs, Greedy);
            await writer.SessionWrites;
        }
        var (key, genuine) = store.LastSession!.Value;
        int start = int.Parse(genuine.Text.AsSpan(0, genuine.Text.IndexOf(':')), System.Globalization.CultureInfo.InvariantCulture);
        string ids = genuine.Text[(genuine.Text.IndexOf(':') + 1)..];
        string text = template.Replace("{start}", start.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{ids}", ids, StringComparison.Ordinal)
            .Replace("{ctxids}", string.Join(',', Enumerable.Repeat("1", 2047)), StringComparison.Ordinal)
            .Replace("{badid}", string.Join(',', Enumerable.Repeat(fixture.Model.Config.VocabSize.ToString(System.Globalization.CultureInfo.InvariantCulture), start)), StringComparison.Ordinal);

        List<ChatMessage> messages = [new(ChatRole.User, "Which document mentions w5?"), new(ChatRole.Assistant, first.Text), new(ChatRole.User, "And w12?")];
        GenerationResult expected;
        using (var recompute = Engine(store.Inner, sessionBytes: 0)) expected = await recompute.ChatAsync(messages, docs, Greedy);

        long least = long.MaxValue;
        for (int read = 0; read < Reads; read++)
        {
            using var hostile = new DocumentKvCache(key.DocumentId, 0, genuine.TokenIds, genuine.Keys.alias(), genuine.Values.alias(),
                genuine.ModelFingerprint, genuine.PromptFormat, null, text, genuine.Tenant);
            await store.Inner.PutAsync(key, hostile);
            using var reader = Engine(store); // holds no session: it reads the planted one
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var actual = await reader.ChatAsync(messages, docs, Greedy);
            least = Math.Min(least, GC.GetTotalAllocatedBytes(precise: true) - before);
            Assert.Equal(expected.TokenIds, actual.TokenIds);
            Assert.Equal(expected.Usage.CachedTokens, actual.Usage.CachedTokens); // a miss: nothing of the planted entry reused
            for (int i = 0; i < expected.Logprobs!.Count; i++) Assert.Equal(expected.Logprobs[i].Logprob, actual.Logprobs![i].Logprob, 1e-4);
            await reader.SessionWrites;
        }
        Assert.True(least < 16 << 20, $"{name}: each of {Reads} requests allocated at least {least} bytes");
        genuine.Dispose();
    }
}
