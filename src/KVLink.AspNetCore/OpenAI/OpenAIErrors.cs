using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace KVLink.AspNetCore;

/// <summary>
/// Writes errors in OpenAI's shape, <c>{"error":{"message","type","param","code"}}</c>, the one body OpenAI clients
/// (the official .NET, Python and JavaScript SDKs, LangChain) parse into their error objects. The endpoints of
/// <see cref="KvLinkEndpointRouteBuilderExtensions.MapKvLinkOpenAI"/> answer every error this way; call it from your own
/// rejections too (a rate limiter's <c>OnRejected</c>, an authentication challenge), so a client sees a sentence, not an
/// empty body.
/// </summary>
public static class OpenAIErrors
{
    /// <summary>Writes an OpenAI-shaped error with <paramref name="statusCode"/> (nothing, when the response has started).</summary>
    /// <param name="context">The request's context.</param>
    /// <param name="statusCode">The HTTP status (400, 401, 404, 413, 429, 500...).</param>
    /// <param name="message">A sentence saying what went wrong and how to fix it.</param>
    /// <param name="param">The request field at fault (<c>max_tokens</c>, <c>messages</c>), or null.</param>
    /// <param name="code">A machine-readable code (<c>model_not_found</c>, <c>rate_limit_exceeded</c>), or null.</param>
    /// <param name="type">OpenAI's error type; null picks the usual one for the status (<c>invalid_request_error</c> for 4xx, <c>server_error</c> for 5xx).</param>
    public static Task WriteAsync(HttpContext context, int statusCode, string message, string? param = null, string? code = null, string? type = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(message);
        if (context.Response.HasStarted) return Task.CompletedTask;
        context.Response.StatusCode = statusCode;
        context.Response.ContentType = "application/json; charset=utf-8";
        return context.Response.WriteAsync(JsonText.Of(Body(statusCode, message, param, code, type)), context.RequestAborted);
    }

    /// <summary>The error object (also what a stream's error event carries).</summary>
    internal static JsonObject Body(int statusCode, string message, string? param, string? code, string? type = null) => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = message,
            ["type"] = type ?? TypeFor(statusCode),
            ["param"] = param,
            ["code"] = code,
        },
    };

    // The types OpenAI's own API uses, by status.
    private static string TypeFor(int status) => status switch
    {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
}
