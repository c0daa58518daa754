using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// Kept conversations with <see cref="KvLinkOptions.DecodeWithInt8Weights"/> (issue 28, item 4): the answer's keys and
/// values come from int8 decode rows, which a recompute computes as full-precision prompt rows (logprobs differed by up to
/// 7.1e-3). Only the prompt is kept, so the next turn computes the answer's tokens again as prompt rows: every turn
/// equals recomputing the conversation within float32 round-off, as without int8, and still reuses the earlier prompts.
/// </summary>
public sealed class Int8SessionTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 8, Logprobs = true };

    [Fact]
    public async Task A_continued_conversation_with_int8_decoding_equals_recomputing_it()
    {
        using var model = fixture.LoadModel(); // int8 copies are added to the model: not the class's shared one
        var store = new MemoryKvCacheStore();
        KvLinkEngine Engine(long sessionBytes, bool int8 = true) => fixture.SessionEngine(sessionBytes, store, int8: int8, model: model);
        using var reuse = Engine(64L << 20);
        using var full = Engine(64L << 20, int8: false);
        using var recompute = Engine(0);
        string[] docs = await CheckpointFixture.PrecomputeDocs(reuse, 2);
        var messages = new List<ChatMessage>();
        int previousPrompt = 0;
        foreach (string question in new[] { "Which document mentions w5?", "And w12?", "Say it again." })
        {
            messages.Add(new ChatMessage(ChatRole.User, question));
            var expected = await recompute.ChatAsync(messages, docs, Greedy);
            var actual = await reuse.ChatAsync(messages, docs, Greedy);
            // The int8 engine keeps the prompt only; a full-precision engine also keeps the answer's fed-back tokens.
            var withAnswer = await full.ChatAsync(messages, docs, Greedy with { ConversationId = "full" });
            long perToken = model.CacheBytesPerToken;
            Assert.Equal(withAnswer.Usage.PromptTokens, actual.Usage.PromptTokens);
            Assert.Equal((actual.TokenIds.Count - 1) * perToken, full.Sessions.Bytes - reuse.Sessions.Bytes);
            Assert.Equal(expected.PromptTokenIds, actual.PromptTokenIds);
            Assert.Equal(expected.TokenIds, actual.TokenIds);
            for (int i = 0; i < expected.Logprobs!.Count; i++) Assert.Equal(expected.Logprobs[i].Logprob, actual.Logprobs![i].Logprob, 1e-6);
            // The previous prompt is reused (its last token, the open assistant header, may be re-encoded differently).
            if (previousPrompt > 0) Assert.True(actual.Usage.CachedTokens >= previousPrompt - 1, $"cached {actual.Usage.CachedTokens}, previous prompt {previousPrompt}");
            previousPrompt = actual.Usage.PromptTokens;
            messages.Add(new ChatMessage(ChatRole.Assistant, actual.Text));
        }
    }
}
