using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// Kept sessions persisted to a <see cref="MemoryKvCacheStore"/> (issue 28, item 1). The store shared the entry it was
/// given on the model thread, inside the step's dispose scope, so its own handles were freed when that scope ended, and a
/// conversation dropped from <see cref="KvLinkOptions.SessionCacheBytes"/> and continued from the store failed with
/// "Tensor invalid -- empty handle". The store's handles now belong to the store: the continued turn is read from the
/// store, exact, and computes only its new tokens, on the same engine and on a second engine sharing the store.
/// </summary>
public sealed class PersistedSessionOwnershipTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 6, Logprobs = true };

    private KvLinkEngine Engine(long sessionBytes, IKvCacheStore? store = null, bool persist = false) =>
        fixture.SessionEngine(sessionBytes, store, persist);

    private static Task<string[]> Precompute(KvLinkEngine engine) => CheckpointFixture.PrecomputeDocs(engine, 2);

    private static void AssertSame(GenerationResult expected, GenerationResult actual)
    {
        Assert.Equal(expected.PromptTokenIds, actual.PromptTokenIds);
        Assert.Equal(expected.TokenIds, actual.TokenIds);
        for (int i = 0; i < expected.Logprobs!.Count; i++) Assert.Equal(expected.Logprobs[i].Logprob, actual.Logprobs![i].Logprob, 1e-4);
    }

    /// <summary>Two turns of conversation <paramref name="name"/>: the first question, its answer, a second question.</summary>
    private static List<ChatMessage> Turn2(string name, GenerationResult first) =>
        [new(ChatRole.User, $"Conversation {name}: which document mentions w5?"), new(ChatRole.Assistant, first.Text), new(ChatRole.User, "And w12?")];

    private static List<ChatMessage> Turn1(string name) => [new(ChatRole.User, $"Conversation {name}: which document mentions w5?")];

    /// <summary>
    /// A session budget that holds conversation A's second turn (so a continued turn is kept, as in a real server), but
    /// never two conversations' kept caches: another conversation's turn drops A's.
    /// </summary>
    private static async Task<long> OneConversationBudget(KvLinkEngine probe, string[] docs)
    {
        var a1 = await probe.ChatAsync(Turn1("A"), docs, Greedy);
        long first = probe.Sessions.Bytes;
        await probe.ChatAsync(Turn2("A", a1), docs, Greedy);
        long second = probe.Sessions.Bytes; // A's second turn replaced its first
        Assert.True(second < 2 * first, $"turn 2 keeps {second} bytes, turn 1 {first}: the budget would hold two conversations");
        return second;
    }

    [Fact]
    public async Task A_conversation_dropped_from_the_session_budget_continues_from_a_memory_store_on_the_same_engine()
    {
        using var store = new MemoryKvCacheStore();
        using var probe = Engine(64L << 20);
        string[] docs = await Precompute(probe);
        long budget = await OneConversationBudget(probe, docs);

        // Room for one kept conversation only: B's first turn drops A's.
        using var engine = Engine(budget, store, persist: true);
        using var recompute = Engine(0);
        await Precompute(engine);
        await Precompute(recompute);
        var a1 = await engine.ChatAsync(Turn1("A"), docs, Greedy);
        await engine.ChatAsync(Turn1("B"), docs, Greedy);
        await engine.SessionWrites;
        Assert.Equal(1, engine.Sessions.Count);

        for (int retry = 0; retry < 2; retry++) // a retry reads the same stored entry again
        {
            var expected = await recompute.ChatAsync(Turn2("A", a1), docs, Greedy);
            var continued = await engine.ChatAsync(Turn2("A", a1), docs, Greedy);
            AssertSame(expected, continued);
            Assert.True(continued.Usage.CachedTokens >= a1.Usage.PromptTokens, $"cached {continued.Usage.CachedTokens}, first prompt {a1.Usage.PromptTokens}");
            await engine.ChatAsync(Turn1("B"), docs, Greedy); // drops A again
            await engine.SessionWrites;
        }
    }

    [Fact]
    public async Task A_conversation_continues_on_a_second_engine_sharing_the_memory_store_after_the_first_dropped_it()
    {
        using var store = new MemoryKvCacheStore();
        using var probe = Engine(64L << 20);
        string[] docs = await Precompute(probe);
        long budget = await OneConversationBudget(probe, docs);

        using var replicaA = Engine(budget, store, persist: true);
        using var replicaB = Engine(64L << 20, store, persist: true);
        using var recompute = Engine(0);
        await Precompute(replicaA);
        await Precompute(recompute);
        var first = await replicaA.ChatAsync(Turn1("A"), docs, Greedy);
        await replicaA.ChatAsync(Turn1("B"), docs, Greedy); // A's copy is dropped on replica A
        await replicaA.SessionWrites;

        var expected = await recompute.ChatAsync(Turn2("A", first), docs, Greedy);
        var onB = await replicaB.ChatAsync(Turn2("A", first), docs, Greedy);
        AssertSame(expected, onB);
        Assert.True(onB.Usage.CachedTokens >= first.Usage.PromptTokens, $"cached {onB.Usage.CachedTokens}, first prompt {first.Usage.PromptTokens}");
        // Replica A continues from the store too: the entry B read is still whole.
        var onA = await replicaA.ChatAsync(Turn2("A", first), docs, Greedy);
        AssertSame(expected, onA);
        Assert.True(onA.Usage.CachedTokens >= first.Usage.PromptTokens, $"cached {onA.Usage.CachedTokens}, first prompt {first.Usage.PromptTokens}");
    }
}
