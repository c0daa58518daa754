using System.Text.Json.Nodes;
using KVLink.Core.Generation;

namespace KVLink.AspNetCore;

/// <summary>The response objects of chat completions: the whole answer, the stream's chunks, usage and logprobs.</summary>
internal sealed class ChatCompletionJson(string model)
{
    private readonly string _id = "chatcmpl-" + Guid.NewGuid().ToString("N");
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public JsonObject Completion(GenerationResult result) => new()
    {
        ["id"] = _id, ["object"] = "chat.completion", ["created"] = _created, ["model"] = model,
        ["choices"] = new JsonArray(new JsonObject
        {
            ["index"] = 0,
            ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = result.Text },
            ["logprobs"] = Logprobs(result.Logprobs),
            ["finish_reason"] = Finish(result.FinishReason),
        }),
        ["usage"] = Usage(result),
        ["kvlink"] = Extension(result),
    };

    public JsonObject Chunk(JsonObject delta, string? finish = null, JsonObject? logprobs = null) => new()
    {
        ["id"] = _id, ["object"] = "chat.completion.chunk", ["created"] = _created, ["model"] = model,
        ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = logprobs, ["finish_reason"] = finish }),
    };

    /// <summary>The usage chunk (stream_options.include_usage): no choices, OpenAI's usage and KVLink's figures.</summary>
    public JsonObject UsageChunk(GenerationResult result) => new()
    {
        ["id"] = _id, ["object"] = "chat.completion.chunk", ["created"] = _created, ["model"] = model,
        ["choices"] = new JsonArray(), ["usage"] = Usage(result), ["kvlink"] = Extension(result),
    };

    public static string Finish(FinishReason reason) => reason == FinishReason.Length ? "length" : "stop";

    private static JsonObject Usage(GenerationResult r) => new()
    {
        ["prompt_tokens"] = r.Usage.PromptTokens,
        ["completion_tokens"] = r.Usage.GeneratedTokens,
        ["total_tokens"] = r.Usage.PromptTokens + r.Usage.GeneratedTokens,
        ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = r.Usage.CachedTokens },
    };

    // KVLink's own figures, beside OpenAI's fields: computed tokens, the conversation id and time to first token.
    private static JsonObject Extension(GenerationResult r) => new()
    {
        ["computed_tokens"] = r.Usage.ComputedTokens,
        ["conversation_id"] = r.ConversationId,
        ["ttft_ms"] = Math.Round(r.Timings.TimeToFirstToken.TotalMilliseconds, 2),
    };

    public static JsonObject? Logprobs(IEnumerable<TokenLogprob>? items) => items is null ? null : new JsonObject
    {
        ["content"] = new JsonArray([.. items.Select(l => (JsonNode)new JsonObject
        {
            ["token"] = l.Token,
            ["logprob"] = l.Logprob,
            ["bytes"] = Bytes(l.Bytes),
            ["top_logprobs"] = new JsonArray([.. l.TopAlternatives.Select(a => (JsonNode)new JsonObject { ["token"] = a.Token, ["logprob"] = a.Logprob, ["bytes"] = Bytes(a.Bytes) })]),
        })]),
    };

    private static JsonArray Bytes(IReadOnlyList<byte> bytes) => new([.. bytes.Select(b => (JsonNode)(int)b)]);
}
