using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace KVLink.AspNetCore;

/// <summary>
/// How response bodies are written: apostrophes, quotes in messages and non-ASCII text as themselves rather than
/// <c>\u0027</c> escapes (the default encoder escapes them for embedding in HTML, which a JSON API body never is).
/// </summary>
internal static class JsonText
{
    private static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Of(JsonNode node) => node.ToJsonString(Options);
}
