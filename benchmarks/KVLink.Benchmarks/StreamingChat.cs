using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace KVLink.Benchmarks;

/// <summary>What one streaming client saw of one answer.</summary>
/// <param name="TtftMs">From sending the request to the first chunk with non-empty <c>delta.content</c>.</param>
/// <param name="GapsMs">Gaps between consecutive content chunks (the sample sends one per text delta, flushed as produced).</param>
/// <param name="CompletionTokens"><c>usage.completion_tokens</c> of the final usage chunk.</param>
/// <param name="TotalMs">From sending the request to the end of the stream.</param>
/// <param name="ServerTtftMs">The server's own TTFT (<c>kvlink.ttft_ms</c>: from the engine call, queue wait included).</param>
/// <param name="Text">The answer's text (the content chunks joined).</param>
internal sealed record StreamedAnswer(double TtftMs, List<double> GapsMs, int CompletionTokens, double TotalMs, double ServerTtftMs, string Text);

/// <summary>One OpenAI-style streaming chat completion against the sample, read as server-sent events with a plain HttpClient.</summary>
internal static class StreamingChat
{
    /// <summary>
    /// POSTs /v1/chat/completions with <c>stream: true</c> and <c>stream_options.include_usage</c>, greedy, the
    /// <paramref name="documents"/> (ids from POST /documents) as the sample's <c>documents</c> extension, and reads the
    /// events until <c>data: [DONE]</c>, timing each content chunk as it arrives.
    /// </summary>
    public static async Task<StreamedAnswer> SendAsync(HttpClient http, string question, IReadOnlyList<string> documents, int maxTokens, CancellationToken ct = default)
    {
        var body = new JsonObject
        {
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = question }),
            ["documents"] = new JsonArray([.. documents.Select(d => (JsonNode)d)]),
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
        };
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = JsonContent.Create(body) };
        // Headers only: the body is read as it streams in, not buffered to the end.
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"{(int)response.StatusCode} from /v1/chat/completions: {await response.Content.ReadAsStringAsync(ct)}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        double first = double.NaN, last = double.NaN, serverTtft = double.NaN;
        var gaps = new List<double>();
        int tokens = 0;
        var text = new StringBuilder();
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue; // blank separators
            string data = line[6..];
            if (data == "[DONE]") break;
            double now = clock.Elapsed.TotalMilliseconds;
            var chunk = JsonNode.Parse(data)!;
            if (chunk["choices"] is JsonArray { Count: > 0 } choices && choices[0]!["delta"]?["content"]?.GetValue<string>() is { Length: > 0 } delta)
            {
                if (double.IsNaN(first)) first = now;
                else gaps.Add(now - last);
                last = now;
                text.Append(delta);
            }
            if (chunk["usage"] is { } usage)
            {
                tokens = usage["completion_tokens"]!.GetValue<int>();
                serverTtft = chunk["kvlink"]?["ttft_ms"]?.GetValue<double>() ?? double.NaN;
            }
        }
        if (double.IsNaN(first)) throw new InvalidOperationException($"the answer to '{question}' streamed no content");
        return new StreamedAnswer(first, gaps, tokens, clock.Elapsed.TotalMilliseconds, serverTtft, text.ToString());
    }
}
