using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace KVLink.AspNetCore.Tests;

/// <summary>
/// Over HTTP, a kept conversation is reused only by requests of the same caller: the same authenticated principal,
/// <c>user</c> and <c>cache_salt</c> (issue 28 item 5). A caller who knows another's conversation start gets the
/// <c>cached_tokens</c> of a fresh conversation for its guess at the private turn.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class CallerPartitionTests(KvLinkServer server)
{
    private const string Secret = "My account number is 4417.";

    private static JsonObject Body(string[] documents, IEnumerable<(string Role, string Text)> turns, string? user = null, string? cacheSalt = null)
    {
        var body = new JsonObject
        {
            ["messages"] = new JsonArray([.. turns.Select(t => (JsonNode)new JsonObject { ["role"] = t.Role, ["content"] = t.Text })]),
            ["documents"] = new JsonArray([.. documents.Select(d => (JsonNode)d)]),
            ["max_tokens"] = 8,
            ["temperature"] = 0,
        };
        if (user is not null) body["user"] = user;
        if (cacheSalt is not null) body["cache_salt"] = cacheSalt;
        return body;
    }

    private async Task<(string Text, int Cached)> Complete(JsonObject body, bool authenticated = false)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };
        if (authenticated) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", KvLinkServer.ApiKey);
        using var response = await server.Http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        var json = JsonDocument.Parse(text).RootElement;
        return (json.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!,
            json.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32());
    }

    /// <summary>A victim's two turns (the second private) under its caller parts; returns the probe of its start with the secret guessed.</summary>
    private async Task<List<(string, string)>> Victim(string[] ids, string? user, string? cacheSalt, bool authenticated)
    {
        string question = Corpus.Sample.Sample.Question + " " + Guid.NewGuid().ToString("N"); // a conversation start of this test's own
        List<(string, string)> turns = [("user", question)];
        var first = await Complete(Body(ids, turns, user, cacheSalt), authenticated);
        turns.Add(("assistant", first.Text));
        turns.Add(("user", Secret));
        var second = await Complete(Body(ids, turns, user, cacheSalt), authenticated);
        turns.Add(("assistant", second.Text));
        turns.Add(("user", "Anything else?"));
        return turns;
    }

    [Fact]
    public async Task Another_user_or_cache_salt_or_principal_sees_a_fresh_conversations_cached_tokens()
    {
        string[] ids = await Corpus.PostDocumentsAsync(server.Http);

        // By OpenAI's user field (a backend setting it per end user).
        var probe = await Victim(ids, user: "alice", cacheSalt: null, authenticated: false);
        var fresh = await Complete(Body(ids, probe, user: "fresh-" + Guid.NewGuid()));
        var mallory = await Complete(Body(ids, probe, user: "mallory"));
        Assert.Equal(fresh.Cached, mallory.Cached);
        Assert.Equal(fresh.Text, mallory.Text);
        Assert.Equal(fresh.Cached, (await Complete(Body(ids, probe))).Cached); // no user at all: a caller of its own
        Assert.True((await Complete(Body(ids, probe, user: "alice"))).Cached > fresh.Cached); // the same user reuses

        // By vLLM's cache_salt, a secret the client keeps.
        probe = await Victim(ids, user: null, cacheSalt: "s-8d1e", authenticated: false);
        fresh = await Complete(Body(ids, probe, cacheSalt: "fresh-" + Guid.NewGuid()));
        Assert.Equal(fresh.Cached, (await Complete(Body(ids, probe, cacheSalt: "s-8d1f"))).Cached);
        Assert.True((await Complete(Body(ids, probe, cacheSalt: "s-8d1e"))).Cached > fresh.Cached);

        // By the authenticated principal, which a caller cannot choose: the same user and salt without it miss.
        probe = await Victim(ids, user: "alice", cacheSalt: null, authenticated: true);
        fresh = await Complete(Body(ids, probe, user: "fresh-" + Guid.NewGuid()), authenticated: true);
        Assert.Equal(fresh.Cached, (await Complete(Body(ids, probe, user: "alice"))).Cached);
        Assert.True((await Complete(Body(ids, probe, user: "alice"), authenticated: true)).Cached > fresh.Cached);
    }

    [Fact]
    public async Task An_empty_or_mistyped_cache_salt_is_a_400_naming_it()
    {
        foreach (string value in new[] { "\"\"", "5", "[\"x\"]" })
        {
            string body = $$"""{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2,"cache_salt":{{value}}}""";
            using var response = await server.Http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
            string text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == System.Net.HttpStatusCode.BadRequest, text);
            Assert.Equal("cache_salt", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
        }
    }
}
