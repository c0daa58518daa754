using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace KVLink.AspNetCore;

/// <summary>
/// The endpoint's own log: a client sees a 500 as a sentence that says nothing of the cause, so the cause goes to the
/// operator's log (category <c>KVLink.AspNetCore</c>).
/// </summary>
internal static partial class ServerLog
{
    /// <summary>Logs <paramref name="e"/> when the client is told the server failed (status 5xx).</summary>
    public static void Failed(HttpContext http, OpenAIRequestException answer, Exception e)
    {
        if (answer.Status < 500) return;
        var logger = http.RequestServices.GetService<ILoggerFactory>()?.CreateLogger("KVLink.AspNetCore");
        if (logger is not null) RequestFailed(logger, http.Request.Path, http.Response.HasStarted, e);
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Error, Message = "{Path} failed (response started: {Started}); the client was sent a server_error")]
    private static partial void RequestFailed(ILogger logger, string path, bool started, Exception error);
}
