using System.Collections.Concurrent;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// The scaled-down soak of issue 28: many distinct long conversations (about 900-token prompts, two turns each) run
/// concurrently on one engine whose session budget holds only a few, persisted to a shared memory store, while another
/// thread forces garbage collections (what made temporary TorchSharp scalars fail about once in 1,000 long requests).
/// No exception may escape, and a sample of the continued turns equals recomputing the conversation. The long soak is
/// the benchmark's <c>--soak</c> mode (benchmarks/KVLink.Benchmarks/README.md).
/// KVLINK_SOAK_CONVERSATIONS sets the count (default 300).
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class ConversationSoakTests(CheckpointFixture fx, ITestOutputHelper output) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 6, StopTokenIds = [] };

    private static int Conversations =>
        int.TryParse(Environment.GetEnvironmentVariable("KVLINK_SOAK_CONVERSATIONS"), out int n) && n > 0 ? n : 300;

    private KvLinkEngine Engine(IKvCacheStore store, long sessionBytes) => fx.SessionEngine(sessionBytes, store, persist: sessionBytes > 0);

    private static List<ChatMessage> Turn1(int c) => [new(ChatRole.User, $"Conversation {c}: which documents mention w{c % 97}?")];

    private static List<ChatMessage> Turn2(int c, string answer) =>
        [.. Turn1(c), new(ChatRole.Assistant, answer), new(ChatRole.User, $"And w{(c * 7) % 97} in conversation {c}?")];

    [Fact]
    public async Task Many_long_conversations_under_session_eviction_raise_no_exception_and_continue_exactly()
    {
        using var store = new MemoryKvCacheStore();
        using var recompute = Engine(store, sessionBytes: 0);
        string[] docs = [.. await Task.WhenAll(Enumerable.Range(1, 3).Select(i => recompute.PrecomputeAsync(CheckpointFixture.Doc(i, words: 70))))];
        var probe = await recompute.ChatAsync(Turn1(0), docs, Greedy);
        Assert.True(probe.Usage.PromptTokens > 800, $"prompts of {probe.Usage.PromptTokens} tokens are not long");

        // A kept session of these conversations takes about 60 KiB: the budget holds about four of the dozens in flight.
        using var soaked = Engine(store, sessionBytes: 256L << 10);
        int count = Conversations;
        var errors = new ConcurrentBag<string>();
        var answers = new ConcurrentDictionary<int, (string First, GenerationResult Second)>();
        int stop = 0;
        var collector = new Thread(() =>
        {
            while (Volatile.Read(ref stop) == 0) { GC.Collect(); Thread.Sleep(2); }
        }) { IsBackground = true };
        collector.Start();
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(1, count), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (c, _) =>
            {
                try
                {
                    var first = await soaked.ChatAsync(Turn1(c), docs, Greedy);
                    await Task.Yield();
                    var second = await soaked.ChatAsync(Turn2(c, first.Text), docs, Greedy);
                    answers[c] = (first.Text, second);
                }
                catch (Exception e) { errors.Add($"conversation {c}: {e.GetType().Name}: {e.Message.Split('\n')[0]}"); }
            });
            await soaked.SessionWrites;
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            collector.Join();
        }
        output.WriteLine($"{count} conversations, {2 * count} requests, {errors.Count} exceptions, {soaked.Sessions.Count} sessions kept ({soaked.Sessions.Bytes} bytes), store {store.Count} entries");
        Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(10)));
        Assert.True(soaked.Sessions.Bytes <= 256L << 10);

        foreach (int c in Enumerable.Range(1, count).Where(c => c % 8 == 1))
        {
            var (first, second) = answers[c];
            var expected = await recompute.ChatAsync(Turn2(c, first), docs, Greedy);
            Assert.Equal(expected.PromptTokenIds, second.PromptTokenIds);
            Assert.Equal(expected.TokenIds, second.TokenIds);
        }
    }
}
