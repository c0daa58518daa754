using System.ClientModel;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Tests.Docs;
using KVLink.Demo;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using MeaiChatMessage = Microsoft.Extensions.AI.ChatMessage;

namespace KVLink.Core.Tests.Hosting;

/// <summary>
/// The ASP.NET sample's OpenAI-compatible endpoint, started on loopback and called by the official OpenAI .NET client
/// through Microsoft.Extensions.AI.OpenAI (streaming and not, history, documents as an extension field, cached tokens,
/// logprobs, stop, seed), plus the wire format checked directly.
/// </summary>
public sealed class OpenAiEndpointTests : IAsyncLifetime
{
    private Process? _app;
    private int _port;
    private readonly HttpClient _http = new();
    private readonly StringBuilder _output = new();
    private KvLinkEngine? _engine; // the same model and settings in this process: what the endpoint must answer

    public async Task InitializeAsync()
    {
        _port = LoopbackPorts.FreePair().Port;
        // The sample as built next to this test (same configuration), started as its own process on loopback.
        string configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;
        string dll = Path.Combine(MarkdownDocs.RepoRoot, "samples", "KVLink.AspNetCore", "bin", configuration, "net10.0", "KVLink.AspNetCore.Sample.dll");
        var start = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { dll, "--Port", _port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--KvLink:DType", "Float32",
            "--KvLink:LinkTokens", "5", "--KvLink:PrecomputeSlots", "3", "--Logging:LogLevel:Default", "Warning" })
            start.ArgumentList.Add(arg);
        _app = Process.Start(start)!;
        _app.OutputDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _app.ErrorDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _app.BeginOutputReadLine();
        _app.BeginErrorReadLine();
        _http.BaseAddress = new Uri($"http://127.0.0.1:{_port}");
        _engine = await DemoModel.LoadEngineAsync(options: new KvLinkOptions { DType = ComputeDType.Float32, LinkTokens = 5, PrecomputeSlots = 3 });
        // Wait (bounded) until the sample answers its health check: it loads the model when it starts.
        for (int i = 0; i < 600; i++)
        {
            if (_app.HasExited) { await _app.WaitForExitAsync(); lock (_output) Assert.Fail($"the sample exited while starting (code {_app.ExitCode}):\n{_output}"); }
            try { if ((await _http.GetAsync("/health")).IsSuccessStatusCode) return; }
            catch (HttpRequestException) { }
            await Task.Delay(100);
        }
        Assert.Fail("the sample did not become healthy within a minute");
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        if (_engine is not null) await _engine.DisposeAsync();
        if (_app is not null)
        {
            if (!_app.HasExited) _app.Kill(entireProcessTree: true);
            await _app.WaitForExitAsync();
            _app.Dispose();
        }
    }

    // A held-out multi-turn sample of the synthetic corpus the demo model was trained on (seed 999 was not used in training).
    private static readonly KVLink.Training.SyntheticRagQuestion Sample = KVLink.Training.SyntheticRagCorpus.Generate(new KVLink.Training.SyntheticRagCorpusOptions
        { Seed = 999, TrainQuestionsPerKind = 1, EvalQuestionsPerKind = 0, MaxFollowUps = 2 }).Train[0];

    private async Task<string[]> PostDocumentsAsync()
    {
        var ids = new List<string>();
        foreach (var d in Sample.Sample.Documents)
        {
            var r = await _http.PostAsJsonAsync("/documents", new { text = d.Text, title = d.Title });
            r.EnsureSuccessStatusCode();
            ids.Add((await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetString()!);
        }
        return [.. ids];
    }

    // What the engine itself answers for the same conversation (greedy, 24 tokens): the HTTP path must give exactly this.
    private async Task<KVLink.Core.Generation.GenerationResult> Direct(IEnumerable<MeaiChatMessage> messages, string[] ids)
    {
        foreach (var d in Sample.Sample.Documents) await _engine!.PrecomputeAsync(d);
        return await _engine!.ChatAsync(messages, ids, new KvLinkGenerationOptions { MaxNewTokens = 24 });
    }

    private IChatClient OpenAiChatClient(string model) =>
        new ChatClient(model, new ApiKeyCredential("not-used"), new OpenAIClientOptions { Endpoint = new Uri($"http://127.0.0.1:{_port}/v1") }).AsIChatClient();

    private static ChatOptions WithDocuments(string[] ids, bool logprobs = false) => new()
    {
        MaxOutputTokens = 24, Temperature = 0, Seed = 5,
        RawRepresentationFactory = _ =>
        {
            var o = new ChatCompletionOptions { IncludeLogProbabilities = logprobs ? true : null, TopLogProbabilityCount = logprobs ? 2 : null };
#pragma warning disable SCME0001 // JsonPatch is how the OpenAI client sends extension fields
            o.Patch.Set("$.documents"u8, BinaryData.FromString(JsonSerializer.Serialize(ids)));
#pragma warning restore SCME0001
            return o;
        },
    };

    [Fact]
    public async Task The_official_OpenAI_client_holds_a_conversation_over_documents_with_reuse_streaming_and_logprobs()
    {
        string[] ids = await PostDocumentsAsync();
        var models = await _http.GetFromJsonAsync<JsonElement>("/v1/models");
        string model = models.GetProperty("data")[0].GetProperty("id").GetString()!;
        Assert.Equal("kvlink-demo", model);
        using var chat = OpenAiChatClient(model);

        List<MeaiChatMessage> history = [new(ChatRole.User, Sample.Sample.Question)];
        var first = await chat.GetResponseAsync(history, WithDocuments(ids, logprobs: true));
        Assert.Equal((await Direct(history, ids)).Text, first.Text);
        Assert.NotEmpty(first.Text);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Stop, first.FinishReason);
        Assert.True(first.Usage!.CachedInputTokenCount > 0); // the prompt prefix and the stored documents
        // Logprobs in OpenAI's shape, read by the official client: one per output token, with 2 alternatives.
        var completion = Assert.IsType<ChatCompletion>(first.RawRepresentation);
        Assert.Equal((int)first.Usage.OutputTokenCount!, completion.ContentTokenLogProbabilities.Count);
        Assert.All(completion.ContentTokenLogProbabilities, l => { Assert.True(l.LogProbability <= 0); Assert.Equal(2, l.TopLogProbabilities.Count); });

        history.AddRange(first.Messages);
        history.Add(new MeaiChatMessage(ChatRole.User, Sample.Sample.FollowUps![0].Question));
        var second = await chat.GetResponseAsync(history, WithDocuments(ids));
        Assert.Equal((await Direct(history, ids)).Text, second.Text);
        Assert.True(second.Text.Length >= 4, second.Text);
        // The first turn's tokens come from the kept conversation cache: all of the first prompt is cached except the link
        // tokens of the documents before the last (5 each), which every request recomputes.
        Assert.True(second.Usage!.CachedInputTokenCount >= first.Usage.InputTokenCount - 5 * (ids.Length - 1), $"{second.Usage.CachedInputTokenCount} cached of {second.Usage.InputTokenCount}; first prompt {first.Usage.InputTokenCount}");

        // Streaming: the same text, usage at the end (M.E.AI.OpenAI asks for include_usage).
        var text = new StringBuilder();
        UsageDetails? usage = null;
        int updates = 0;
        await foreach (var u in chat.GetStreamingResponseAsync(history, WithDocuments(ids)))
        {
            updates++;
            text.Append(u.Text);
            usage = u.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
        }
        Assert.True(updates > 2);
        Assert.Equal(second.Text, text.ToString());
        Assert.NotNull(usage);
        Assert.Equal(second.Usage.InputTokenCount, usage!.InputTokenCount);

        // Stop: text-level, finish reason stop.
        string stop = second.Text.Substring(second.Text.Length / 2, 2);
        var stopped = await chat.GetResponseAsync(history, new ChatOptions { MaxOutputTokens = 24, StopSequences = [stop], RawRepresentationFactory = WithDocuments(ids).RawRepresentationFactory });
        Assert.Equal(second.Text[..second.Text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text);
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Stop, stopped.FinishReason);

        // Another model name is the OpenAI-style 404.
        using var wrong = OpenAiChatClient("gpt-4o");
        var error = await Assert.ThrowsAsync<ClientResultException>(() => wrong.GetResponseAsync("hi"));
        Assert.Equal(404, error.Status);
    }

    [Fact]
    public async Task The_wire_format_has_cached_tokens_sse_chunks_and_done()
    {
        string[] ids = await PostDocumentsAsync();
        var body = new { messages = new[] { new { role = "user", content = Sample.Sample.Question } }, documents = ids, stream = true, stream_options = new { include_usage = true }, max_tokens = 16 };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var lines = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", lines[^1]);
        var chunks = lines[..^1].Select(l => JsonDocument.Parse(l["data: ".Length..]).RootElement).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        string text = string.Concat(chunks.Where(c => c.GetProperty("choices").GetArrayLength() > 0)
            .Select(c => c.GetProperty("choices")[0].GetProperty("delta")).Where(d => d.TryGetProperty("content", out _)).Select(d => d.GetProperty("content").GetString()));
        // 16 greedy tokens: the start of what the engine answers with 24.
        Assert.NotEmpty(text);
        Assert.StartsWith(text, (await Direct([new(ChatRole.User, Sample.Sample.Question)], ids)).Text, StringComparison.Ordinal);
        var usage = chunks[^1].GetProperty("usage");
        Assert.True(usage.GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32() > 0);
        Assert.True(chunks[^1].GetProperty("kvlink").GetProperty("computed_tokens").GetInt32() > 0);

        var bad = await _http.PostAsJsonAsync("/v1/chat/completions", new { messages = new[] { new { role = "tool", content = "x" } } });
        Assert.Equal(400, (int)bad.StatusCode);
        Assert.Contains("tool", (await bad.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("message").GetString());
    }
}
