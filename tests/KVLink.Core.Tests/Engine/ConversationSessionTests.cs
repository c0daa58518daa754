using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// A conversation's kept attention cache: turn n+1 computes only its new tokens, and gives what recomputing the whole
/// conversation gives (float32: identical greedy tokens, logprobs within tolerance).
/// </summary>
public sealed class ConversationSessionTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 8, Logprobs = true, TopLogprobs = 4 };

    private KvLinkEngine Engine(long sessionBytes, KVLink.Core.Caching.IKvCacheStore? store = null, bool persist = false) =>
        fixture.SessionEngine(sessionBytes, store, persist, precomputeSlots: 4);

    private static Task<string[]> Precompute(KvLinkEngine engine, int count) => CheckpointFixture.PrecomputeDocs(engine, count);

    private static void AssertSame(GenerationResult expected, GenerationResult actual)
    {
        Assert.Equal(expected.PromptTokenIds, actual.PromptTokenIds);
        Assert.Equal(expected.TokenIds, actual.TokenIds);
        Assert.Equal(expected.Text, actual.Text);
        for (int i = 0; i < expected.Logprobs!.Count; i++)
        {
            Assert.Equal(expected.Logprobs[i].Logprob, actual.Logprobs![i].Logprob, 1e-4);
            Assert.Equal(expected.Logprobs[i].TopAlternatives.Select(a => a.TokenId), actual.Logprobs[i].TopAlternatives.Select(a => a.TokenId));
            for (int j = 0; j < expected.Logprobs[i].TopAlternatives.Count; j++)
                Assert.Equal(expected.Logprobs[i].TopAlternatives[j].Logprob, actual.Logprobs[i].TopAlternatives[j].Logprob, 1e-4);
        }
    }

    [Fact]
    public async Task Each_turn_with_the_kept_cache_equals_recomputing_the_whole_conversation_and_computes_only_new_tokens()
    {
        using var reuse = Engine(64L << 20);
        using var recompute = Engine(0);
        string[] docs = await Precompute(reuse, 3);
        await Precompute(recompute, 3);
        var messages = new List<ChatMessage> { new(ChatRole.System, "Be brief.") };
        int previousPrompt = 0;
        string[] questions = ["Which document mentions w5?", "And w12?", "Say it again.", "Thanks, and the first title?"];
        for (int turn = 0; turn < questions.Length; turn++)
        {
            messages.Add(new ChatMessage(ChatRole.User, questions[turn]));
            var expected = await recompute.ChatAsync(messages, docs, Greedy);
            var actual = await reuse.ChatAsync(messages, docs, Greedy);
            AssertSame(expected, actual);
            Assert.Equal(expected.Usage.PromptTokens, actual.Usage.PromptTokens);
            Assert.Equal(expected.Usage.PromptTokens, actual.Usage.CachedTokens + actual.Usage.ComputedTokens);
            if (turn > 0)
            {
                // The whole previous prompt comes from the kept cache (and the previous answer, as far as its re-encoding
                // matches the generated tokens); computed are the new tokens plus the 3 documents' link tokens.
                Assert.True(actual.Usage.CachedTokens >= previousPrompt, $"turn {turn + 1}: cached {actual.Usage.CachedTokens}, previous prompt {previousPrompt}");
                Assert.True(actual.Usage.ComputedTokens <= actual.Usage.PromptTokens - previousPrompt + 3, $"turn {turn + 1}: computed {actual.Usage.ComputedTokens}");
                Assert.True(actual.Usage.ComputedTokens < expected.Usage.ComputedTokens);
            }
            previousPrompt = actual.Usage.PromptTokens;
            Assert.Equal(expected.ConversationId, actual.ConversationId); // the same derived key on both engines
            messages.Add(new ChatMessage(ChatRole.Assistant, actual.Text));
        }
    }

    [Fact]
    public async Task A_session_evicted_or_never_kept_is_rebuilt_exactly_from_the_messages()
    {
        using var tiny = Engine(1); // no session fits in one byte
        using var recompute = Engine(0);
        string[] docs = await Precompute(tiny, 2);
        await Precompute(recompute, 2);
        var first = await tiny.ChatAsync([new ChatMessage(ChatRole.User, "Which document mentions w5?")], docs, Greedy);
        List<ChatMessage> messages = [new(ChatRole.User, "Which document mentions w5?"), new(ChatRole.Assistant, first.Text), new(ChatRole.User, "And w12?")];
        var actual = await tiny.ChatAsync(messages, docs, Greedy);
        AssertSame(await recompute.ChatAsync(messages, docs, Greedy), actual);
        Assert.Equal(first.Usage.CachedTokens, actual.Usage.CachedTokens); // prefix and documents only: nothing was kept
    }

    [Fact]
    public async Task Sessions_are_kept_under_the_byte_budget_least_recently_used_first()
    {
        using var engine = Engine(64L << 20);
        string[] docs = await Precompute(engine, 1);
        var result = await engine.ChatAsync([new ChatMessage(ChatRole.User, "q0")], docs, Greedy with { ConversationId = "c0" });
        var sessions = engine.Sessions;
        long one = sessions.Bytes;
        Assert.True(one > 0);
        Assert.Equal("c0", result.ConversationId);
        // A budget for about two such sessions keeps the two most recently used.
        var lru = new SessionLru(one * 2 + one / 2);
        static SessionLru.Session Fake(long elements) => new([1, 2], 1, TorchSharp.torch.zeros(elements), TorchSharp.torch.zeros(elements));
        long n = one / 8; // two float32 tensors of n elements = one session's bytes
        lru.Set("a", Fake(n)); lru.Set("b", Fake(n));
        Assert.NotNull(lru.Get("a")); // a is now the most recent
        lru.Set("c", Fake(n));
        Assert.Null(lru.Get("b"));
        Assert.NotNull(lru.Get("a"));
        Assert.NotNull(lru.Get("c"));
        Assert.True(lru.Bytes <= one * 2 + one / 2);
        lru.Dispose();
    }

    [Fact]
    public async Task A_document_added_at_a_later_turn_recomputes_the_turns_after_the_documents_exactly()
    {
        using var reuse = Engine(64L << 20);
        using var recompute = Engine(0);
        string[] docs = await Precompute(reuse, 3);
        await Precompute(recompute, 3);
        var first = await reuse.ChatAsync([new ChatMessage(ChatRole.User, "Which document mentions w5?")], docs[..2], Greedy with { ConversationId = "c" });
        List<ChatMessage> messages = [new(ChatRole.User, "Which document mentions w5?"), new(ChatRole.Assistant, first.Text), new(ChatRole.User, "And in the new one?")];
        var actual = await reuse.ChatAsync(messages, docs, Greedy with { ConversationId = "c" });
        var expected = await recompute.ChatAsync(messages, docs, Greedy with { ConversationId = "c" });
        AssertSame(expected, actual);
        Assert.Equal(expected.Usage.CachedTokens, actual.Usage.CachedTokens); // the kept turns sat after two documents, not three
    }

    [Fact]
    public async Task A_conversation_continues_on_another_replica_through_a_shared_file_store_computing_only_new_tokens()
    {
        using var folder = new TempFolder();
        var store = new KVLink.Core.Caching.FileKvCacheStore(folder.Path);
        using var replicaA = Engine(64L << 20, store, persist: true);
        using var replicaB = Engine(64L << 20, store, persist: true);
        using var notPersisting = Engine(64L << 20, store);
        using var recompute = Engine(0);
        string[] docs = await Precompute(replicaA, 3);
        await Precompute(recompute, 3);

        var messages = new List<ChatMessage> { new(ChatRole.User, "Which document mentions w5?") };
        var first = await replicaA.ChatAsync(messages, docs, Greedy);
        await replicaA.SessionWrites; // the write is off the model thread: the next turn must find it
        messages.Add(new ChatMessage(ChatRole.Assistant, first.Text));
        messages.Add(new ChatMessage(ChatRole.User, "And w12?"));

        var expected = await recompute.ChatAsync(messages, docs, Greedy);
        var withoutSession = await notPersisting.ChatAsync(messages, docs, Greedy);
        var onB = await replicaB.ChatAsync(messages, docs, Greedy);
        AssertSame(expected, onB);
        AssertSame(expected, withoutSession);
        // Replica B read A's kept cache: the first turn's prompt is cached, not computed; the replica that does not read
        // sessions recomputes it.
        Assert.True(onB.Usage.CachedTokens >= first.Usage.PromptTokens, $"cached {onB.Usage.CachedTokens}, first prompt {first.Usage.PromptTokens}");
        Assert.True(onB.Usage.ComputedTokens < withoutSession.Usage.ComputedTokens, $"computed {onB.Usage.ComputedTokens} vs {withoutSession.Usage.ComputedTokens}");
        Assert.Equal(expected.Usage.CachedTokens, withoutSession.Usage.CachedTokens);
    }

    [Fact]
    public async Task A_stored_session_whose_tokens_do_not_match_the_conversation_is_not_used()
    {
        using var folder = new TempFolder();
        var store = new KVLink.Core.Caching.FileKvCacheStore(folder.Path);
        using var replicaA = Engine(64L << 20, store, persist: true);
        using var replicaB = Engine(64L << 20, store, persist: true);
        using var recompute = Engine(0);
        string[] docs = await Precompute(replicaA, 2);
        await Precompute(recompute, 2);
        var first = await replicaA.ChatAsync([new ChatMessage(ChatRole.User, "Which document mentions w5?")], docs, Greedy);
        await replicaA.SessionWrites;
        // Same conversation id (same start), but B's history says the assistant answered something else: the stored
        // tokens diverge right after the first question, so only that common part may be reused, and the answer is exact.
        List<ChatMessage> messages = [new(ChatRole.User, "Which document mentions w5?"), new(ChatRole.Assistant, "Something else entirely."), new(ChatRole.User, "And w12?")];
        var expected = await recompute.ChatAsync(messages, docs, Greedy);
        var onB = await replicaB.ChatAsync(messages, docs, Greedy);
        AssertSame(expected, onB);
        Assert.True(onB.Usage.CachedTokens < expected.Usage.CachedTokens + first.Usage.PromptTokens);
    }
}
