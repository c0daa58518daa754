using System.Security.Claims;
using System.Text;

namespace KVLink.AspNetCore;

/// <summary>
/// The cache salt of a chat request (<c>KvLinkGenerationOptions.CacheSalt</c>): who may reuse a kept conversation. It
/// joins whichever of these the request has: the authenticated principal (its authentication type and name identifier,
/// else its name), which a caller cannot choose; OpenAI's <c>user</c> field, which a backend sets per end user when its
/// users reach the server only through it; and <c>cache_salt</c> (vLLM's field), a secret the client chooses. Each part
/// only splits the partition further, so a caller hits another's kept conversation only by matching every part. None of
/// them (no authentication, no fields): one trust domain, as a single-user deployment on loopback wants.
/// </summary>
internal static class CallerPartition
{
    public static string? Salt(ClaimsPrincipal? principal, string? user, string? cacheSalt)
    {
        var identity = principal?.Identity;
        string? who = identity?.IsAuthenticated == true
            ? (identity.AuthenticationType ?? "") + "/" + (principal!.FindFirstValue(ClaimTypes.NameIdentifier) ?? identity.Name ?? "")
            : null;
        if (who is null && string.IsNullOrEmpty(user) && cacheSalt is null) return null;
        // Length-prefixed, present-or-absent marked parts: no two different triples give the same salt.
        var salt = new StringBuilder("kvlink-openai");
        foreach (string? part in new[] { who, string.IsNullOrEmpty(user) ? null : user, cacheSalt })
            salt.Append('|').Append(part is null ? "-" : part.Length + ":" + part);
        return salt.ToString();
    }
}
