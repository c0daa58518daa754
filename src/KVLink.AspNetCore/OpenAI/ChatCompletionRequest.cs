using System.Text.Json;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using Microsoft.Extensions.AI;

namespace KVLink.AspNetCore;

/// <summary>
/// A chat-completions body, read strictly: every field has the JSON type OpenAI documents for it (a number where a
/// number belongs, an integer where an integer does), every range is checked here with the request field's name, and a
/// field this server does not act on is refused by name rather than ignored. A null field is an absent one, as in
/// OpenAI's API. Anything wrong is an <see cref="OpenAIRequestException"/>, so no request reaches the engine half-read.
/// </summary>
internal sealed record ChatCompletionRequest(
    IReadOnlyList<ChatMessage> Messages, IReadOnlyList<string> Documents, KvLinkGenerationOptions Options, bool Stream, bool IncludeUsage)
{
    /// <summary>The fields this endpoint reads; any other non-null field is a 400 naming it.</summary>
    internal static readonly IReadOnlySet<string> Supported = new HashSet<string>(StringComparer.Ordinal)
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p",
        "seed", "stop", "logprobs", "top_logprobs", "n", "frequency_penalty", "presence_penalty", "response_format", "user",
        "documents", "conversation_id", "cache_salt",
    };

    /// <summary>Reads <paramref name="body"/> for <paramref name="engine"/>; <paramref name="caller"/> (the request's
    /// authenticated principal, if any) joins the cache salt (<see cref="CallerPartition"/>).</summary>
    public static ChatCompletionRequest Read(JsonElement body, KvLinkEngine engine, System.Security.Claims.ClaimsPrincipal? caller = null)
    {
        if (body.ValueKind != JsonValueKind.Object) throw OpenAIRequestException.Invalid(null, "The request body must be a JSON object.");
        foreach (var field in body.EnumerateObject())
            if (!Supported.Contains(field.Name) && field.Value.ValueKind != JsonValueKind.Null)
                throw OpenAIRequestException.Invalid(field.Name, $"'{field.Name}' is not supported by this server.", "unsupported_parameter");

        var json = new JsonFields(body);
        if (json.String("model") is { Length: > 0 } model && model != engine.ModelId)
            throw new OpenAIRequestException(404, $"The model '{model}' does not exist; this server serves '{engine.ModelId}'.", "model", "model_not_found");

        if (json.Object("response_format") is { } format)
        {
            var type = new JsonFields(format).String("type", "response_format.type");
            if (type != "text") throw OpenAIRequestException.Invalid("response_format", $"response_format '{type}' is not supported; only 'text' is.");
        }
        foreach (string penalty in new[] { "frequency_penalty", "presence_penalty" })
            if (json.Number(penalty) is { } p && p != 0) throw OpenAIRequestException.Invalid(penalty, $"'{penalty}' is not supported; leave it out or send 0.");
        if (json.Integer("n") is { } n && n != 1) throw OpenAIRequestException.Invalid("n", "Only n = 1 is supported.");
        // OpenAI's end-user id and vLLM's cache salt scope the reuse of kept conversations, never the answer itself.
        string? user = json.String("user");
        string? cacheSalt = json.String("cache_salt");
        if (cacheSalt is { Length: 0 }) throw OpenAIRequestException.Invalid("cache_salt", "'cache_salt' must not be empty; leave it out for no salt.");

        var messages = ChatMessages.Read(json.Array("messages") ?? throw OpenAIRequestException.Invalid("messages", "'messages' is required: a non-empty array of messages."));

        IReadOnlyList<string>? stop = body.TryGetProperty("stop", out var s) ? s.ValueKind switch
        {
            JsonValueKind.Null => null,
            JsonValueKind.String => [s.GetString()!],
            JsonValueKind.Array => json.Strings("stop"),
            _ => throw OpenAIRequestException.Invalid("stop", "'stop' must be a string or an array of strings."),
        } : null;
        if (stop is { Count: > 4 }) throw OpenAIRequestException.Invalid("stop", "'stop' takes at most 4 sequences.");
        if (stop?.Any(string.IsNullOrEmpty) == true) throw OpenAIRequestException.Invalid("stop", "A stop sequence must not be empty.");

        bool logprobs = json.Boolean("logprobs") ?? false;
        long top = json.Integer("top_logprobs") ?? 0;
        if (top is < 0 or > GenerationOptions.MaxTopLogprobs) throw OpenAIRequestException.Invalid("top_logprobs", $"'top_logprobs' must be between 0 and {GenerationOptions.MaxTopLogprobs}.");
        if (top > 0 && !logprobs) throw OpenAIRequestException.Invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true.");

        // max_completion_tokens is the current name, max_tokens the older one: whichever is sent names the error.
        string maxName = json.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        long? max = json.Integer(maxName);
        if (max is <= 0 or > int.MaxValue) throw OpenAIRequestException.Invalid(maxName, $"'{maxName}' must be a positive integer (at most {int.MaxValue}).");
        double? temperature = json.Number("temperature");
        if (temperature is < 0 or > 2) throw OpenAIRequestException.Invalid("temperature", "'temperature' must be between 0 and 2.");
        double? topP = json.Number("top_p");
        if (topP is <= 0 or > 1) throw OpenAIRequestException.Invalid("top_p", "'top_p' must be greater than 0 and at most 1.");
        long? seed = json.Integer("seed");

        var defaults = engine.Options.Generation;
        var options = new KvLinkGenerationOptions
        {
            MaxNewTokens = max is { } m ? (int)m : defaults.MaxNewTokens,
            Temperature = temperature is { } t ? (float)t : defaults.Temperature,
            TopP = topP is { } p2 ? (float)p2 : defaults.TopP,
            // OpenAI's seed is any 64-bit integer; the sampler takes 32 bits of it.
            Seed = seed is { } sd ? unchecked((int)(sd ^ (sd >> 32))) : defaults.Seed,
            StopSequences = stop is { Count: > 0 } ? stop : null,
            Logprobs = logprobs,
            TopLogprobs = (int)top,
            ConversationId = json.String("conversation_id"),
            CacheSalt = CallerPartition.Salt(caller, user, cacheSalt),
        };

        bool stream = json.Boolean("stream") ?? false;
        bool includeUsage = false;
        if (json.Object("stream_options") is { } streamOptions)
        {
            if (!stream) throw OpenAIRequestException.Invalid("stream_options", "'stream_options' is only allowed with 'stream': true.");
            includeUsage = new JsonFields(streamOptions).Boolean("include_usage", "stream_options.include_usage") ?? false;
        }
        var documents = json.Array("documents") is null ? [] : json.Strings("documents");
        if (documents.Any(string.IsNullOrWhiteSpace)) throw OpenAIRequestException.Invalid("documents", "A document id must not be empty.");
        return new ChatCompletionRequest(messages, documents, options, stream, includeUsage);
    }
}
