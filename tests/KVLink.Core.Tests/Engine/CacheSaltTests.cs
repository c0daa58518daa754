using System.Text;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Hosting;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// The boundary between callers of one tenant (issue 28 item 5): a kept conversation is found by tenant, cache salt and
/// conversation id, so a caller who knows another's conversation start but not its salt gets the cached token counts of a
/// fresh conversation whatever it guesses, and never replaces the other's kept cache.
/// </summary>
public sealed class CacheSaltTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 6 };
    private static readonly KvLinkGenerationOptions Alice = Greedy with { CacheSalt = "alice-7f3a9c" };
    private static readonly KvLinkGenerationOptions Mallory = Greedy with { CacheSalt = "mallory-02be41" };
    private const string Secret = "My account number is w12.";

    private KvLinkEngine Engine(long sessionBytes, IKvCacheStore? store = null, bool persist = false) =>
        fixture.SessionEngine(sessionBytes, store, persist, precomputeSlots: 4);

    private static Task<string[]> Precompute(KvLinkEngine engine, int count) => CheckpointFixture.PrecomputeDocs(engine, count);

    /// <summary>The victim's conversation: a public first turn, then a private message the engine keeps; and the prompt
    /// tokens of its last turn.</summary>
    private static async Task<(List<ChatMessage> Messages, int LastPrompt)> VictimConversation(KvLinkEngine engine, string[] docs, KvLinkGenerationOptions options)
    {
        List<ChatMessage> messages = [new(ChatRole.User, "Which document mentions w5?")];
        var first = await engine.ChatAsync(messages, docs, options);
        messages.Add(new ChatMessage(ChatRole.Assistant, first.Text));
        messages.Add(new ChatMessage(ChatRole.User, Secret));
        var second = await engine.ChatAsync(messages, docs, options);
        messages.Add(new ChatMessage(ChatRole.Assistant, second.Text));
        return (messages, second.Usage.PromptTokens);
    }

    /// <summary>The probe: the victim's known start, then a guess at the private message and one more question.</summary>
    private static List<ChatMessage> Probe(List<ChatMessage> victim, string guess) =>
        [victim[0], victim[1], new(ChatRole.User, guess), victim[3], new(ChatRole.User, "Anything else?")];

    [Fact]
    public async Task A_caller_with_another_salt_learns_nothing_from_cached_tokens_whatever_it_guesses()
    {
        using var engine = Engine(64L << 20);
        using var fresh = Engine(0); // keeps nothing: what a conversation nobody kept costs
        string[] docs = await Precompute(engine, 2);
        await Precompute(fresh, 2);
        var (victim, _) = await VictimConversation(engine, docs, Alice);

        string[] guesses = [Secret, "My account number is w13."];
        for (int i = 0; i < guesses.Length; i++)
        {
            var probe = Probe(victim, guesses[i]);
            var baseline = await fresh.ChatAsync(probe, docs, Greedy);
            // Each guess under a salt of its own, so that it does not meet the attacker's own earlier probe.
            var withOtherSalt = await engine.ChatAsync(probe, docs, Mallory with { CacheSalt = $"mallory-{i}" });
            Assert.Equal(baseline.Text, withOtherSalt.Text);
            Assert.Equal(baseline.Usage.CachedTokens, withOtherSalt.Usage.CachedTokens);
            Assert.Equal(baseline.Usage.ComputedTokens, withOtherSalt.Usage.ComputedTokens);
            if (i == 0) Assert.Equal(baseline.Usage.CachedTokens, (await engine.ChatAsync(probe, docs, Greedy)).Usage.CachedTokens); // no salt is a caller of its own too
        }

        // The same probe under the victim's salt does reuse its kept turns (the test tells a hit from a miss): the count
        // the salt keeps from everyone else.
        var right = await engine.ChatAsync(Probe(victim, Secret), docs, Alice);
        var rightFresh = await fresh.ChatAsync(Probe(victim, Secret), docs, Greedy);
        Assert.True(right.Usage.CachedTokens > rightFresh.Usage.CachedTokens, $"cached {right.Usage.CachedTokens}, fresh {rightFresh.Usage.CachedTokens}");
        Assert.Equal(rightFresh.Text, right.Text);
    }

    [Fact]
    public async Task An_explicit_conversation_id_is_scoped_to_its_salt()
    {
        using var engine = Engine(64L << 20);
        using var fresh = Engine(0);
        string[] docs = await Precompute(engine, 2);
        await Precompute(fresh, 2);
        var (victim, _) = await VictimConversation(engine, docs, Alice with { ConversationId = "support-ticket-1" });
        var probe = Probe(victim, Secret);
        var baseline = await fresh.ChatAsync(probe, docs, Greedy);
        var other = await engine.ChatAsync(probe, docs, Mallory with { ConversationId = "support-ticket-1" });
        var unsalted = await engine.ChatAsync(probe, docs, Greedy with { ConversationId = "support-ticket-1" });
        Assert.Equal(baseline.Usage.CachedTokens, other.Usage.CachedTokens);
        Assert.Equal(baseline.Usage.CachedTokens, unsalted.Usage.CachedTokens);
        var same = await engine.ChatAsync(probe, docs, Alice with { ConversationId = "support-ticket-1" });
        Assert.True(same.Usage.CachedTokens > baseline.Usage.CachedTokens, $"cached {same.Usage.CachedTokens}, fresh {baseline.Usage.CachedTokens}");
    }

    [Fact]
    public async Task The_victims_next_turn_still_reuses_its_kept_turns_after_probes_under_other_salts()
    {
        using var engine = Engine(64L << 20);
        string[] docs = await Precompute(engine, 2);
        var (victim, previousPrompt) = await VictimConversation(engine, docs, Alice);
        int kept = engine.Sessions.Count;
        long before = engine.Sessions.Bytes;
        // Wrong guesses under another salt and under none: each is a conversation of its own, kept beside the victim's.
        await engine.ChatAsync(Probe(victim, "My account number is w13."), docs, Mallory);
        await engine.ChatAsync(Probe(victim, "My account number is w14."), docs, Greedy);
        Assert.Equal(kept + 2, engine.Sessions.Count);
        Assert.True(engine.Sessions.Bytes > before);

        victim.Add(new ChatMessage(ChatRole.User, "And w3?"));
        var next = await engine.ChatAsync(victim, docs, Alice);
        Assert.True(next.Usage.CachedTokens >= previousPrompt, $"cached {next.Usage.CachedTokens}, previous turns at least {previousPrompt}");
        using var fresh = Engine(0);
        await Precompute(fresh, 2);
        var recomputed = await fresh.ChatAsync(victim, docs, Greedy);
        Assert.Equal(recomputed.Text, next.Text);
        Assert.True(next.Usage.ComputedTokens < recomputed.Usage.ComputedTokens);
    }

    [Fact]
    public async Task Persisted_sessions_are_found_only_under_the_same_salt_and_the_salt_is_never_stored()
    {
        using var folder = new TempFolder();
        var store = new FileKvCacheStore(folder.Path);
        using var replicaA = Engine(64L << 20, store, persist: true);
        using var replicaB = Engine(64L << 20, store, persist: true);
        using var replicaC = Engine(64L << 20, store, persist: true);
        using var fresh = Engine(0);
        string[] docs = await Precompute(replicaA, 2);
        await Precompute(fresh, 2);
        var (victim, _) = await VictimConversation(replicaA, docs, Alice);
        await replicaA.SessionWrites;

        var probe = Probe(victim, Secret);
        var baseline = await fresh.ChatAsync(probe, docs, Greedy);
        var other = await replicaB.ChatAsync(probe, docs, Mallory);
        await replicaB.SessionWrites; // B's own session is written too, under its own key: it must not replace A's
        Assert.Equal(baseline.Usage.CachedTokens, other.Usage.CachedTokens);
        Assert.Equal(baseline.Text, other.Text);

        var same = await replicaC.ChatAsync(probe, docs, Alice); // another replica, the victim's salt: A's kept turns
        Assert.True(same.Usage.CachedTokens > baseline.Usage.CachedTokens, $"cached {same.Usage.CachedTokens}, fresh {baseline.Usage.CachedTokens}");
        Assert.Equal(baseline.Text, same.Text);

        // Only a hash of the salt keys the entries: neither the file names nor their bytes hold it.
        foreach (string file in Directory.EnumerateFiles(folder.Path, "*", SearchOption.AllDirectories))
        {
            Assert.DoesNotContain("alice-7f3a9c", file, StringComparison.Ordinal);
            Assert.DoesNotContain("alice-7f3a9c", Encoding.Latin1.GetString(await File.ReadAllBytesAsync(file)), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task The_chat_client_passes_the_salt_and_an_empty_salt_is_refused()
    {
        using var engine = Engine(64L << 20);
        using var chat = engine.AsIChatClient();
        string[] docs = await Precompute(engine, 2);
        List<ChatMessage> messages = [new(ChatRole.User, "Which document mentions w5?")];
        var first = await chat.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 6 }.WithDocuments(docs).WithCacheSalt("alice-7f3a9c"));
        messages.Add(new ChatMessage(ChatRole.Assistant, first.Text));
        messages.Add(new ChatMessage(ChatRole.User, "And w12?"));
        var same = await chat.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 6 }.WithDocuments(docs).WithCacheSalt("alice-7f3a9c"));
        var other = await chat.GetResponseAsync(messages, new ChatOptions { MaxOutputTokens = 6 }.WithDocuments(docs).WithCacheSalt("mallory-02be41"));
        Assert.True(same.Usage!.CachedInputTokenCount >= first.Usage!.InputTokenCount, $"cached {same.Usage.CachedInputTokenCount}, first prompt {first.Usage.InputTokenCount}");
        Assert.True(other.Usage!.CachedInputTokenCount < first.Usage.InputTokenCount, $"cached {other.Usage.CachedInputTokenCount}, first prompt {first.Usage.InputTokenCount}");

        Assert.Throws<ArgumentException>(() => new ChatOptions().WithCacheSalt(""));
        var json = new ChatOptions { AdditionalProperties = new() { [KvLinkChatExtensions.CacheSaltKey] = System.Text.Json.JsonDocument.Parse("\"s1\"").RootElement } };
        Assert.Equal("s1", json.GetCacheSalt());
        json.AdditionalProperties[KvLinkChatExtensions.CacheSaltKey] = 42;
        Assert.Throws<ArgumentException>(() => json.GetCacheSalt());
        Assert.Null(new ChatOptions().GetCacheSalt());
        // A salt from the options' raw representation applies too; one set on ChatOptions wins over it.
        var client = new KvLinkChatClient(engine);
        var raw = new ChatOptions { RawRepresentationFactory = _ => Greedy with { CacheSalt = "raw-salt" } };
        Assert.Equal("raw-salt", Assert.IsType<KvLinkGenerationOptions>(client.Translate(messages, raw).Options).CacheSalt);
        Assert.Equal("set-salt", Assert.IsType<KvLinkGenerationOptions>(client.Translate(messages, raw.WithCacheSalt("set-salt")).Options).CacheSalt);
        await Assert.ThrowsAsync<ArgumentException>(() => engine.ChatAsync(messages, docs, Greedy with { CacheSalt = "" }));
    }
}
