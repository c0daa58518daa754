namespace KVLink.AspNetCore;

/// <summary>A request the endpoint refuses: the status, the sentence and the request field it names.</summary>
internal sealed class OpenAIRequestException(int status, string message, string? param, string? code = null) : Exception(message)
{
    public int Status => status;
    public string? Param => param;
    public string? Code => code;

    /// <summary>A 400 naming <paramref name="param"/>.</summary>
    public static OpenAIRequestException Invalid(string? param, string message, string? code = null) => new(400, message, param, code);

    /// <summary>
    /// The error the client should see for an exception from the engine: unknown documents are a 404, a conversation or
    /// prompt the engine refuses a 400 (naming the request field, not the engine's parameter), anything else a 500.
    /// </summary>
    public static OpenAIRequestException FromEngine(Exception e) => e switch
    {
        OpenAIRequestException r => r,
        // The engine's message names its own API; a client of this endpoint posts documents over HTTP.
        KeyNotFoundException => new(404, e.Message.Replace("precompute it with PrecomputeAsync first", "post it to the documents endpoint first", StringComparison.Ordinal),
            "documents", "document_not_found"),
        // The engine names its own parameters; the request's fields are messages (the conversation, and a prompt too long
        // for the model's positions, as OpenAI reports it) and documents (their ids).
        ArgumentException a when a.Message.Contains("positions", StringComparison.Ordinal) => new(400, Sentence(a), "messages", "context_length_exceeded"),
        ArgumentException a => new(400, Sentence(a), a.ParamName is "documentIds" ? "documents" : "messages"),
        NotSupportedException => new(400, e.Message, "messages"),
        _ => new(500, "The server failed while answering; the request can be retried.", null, "server_error"),
    };

    // ArgumentException.Message ends with " (Parameter 'name')", the engine's parameter, which means nothing to a client.
    private static string Sentence(ArgumentException e) =>
        e.ParamName is { } name ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
}
