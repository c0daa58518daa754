using System.Text.Json;
using KVLink.Core.Engine;
using KVLink.Core.Hosting;
using KVLink.TestSupport;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace KVLink.Core.Tests.Hosting;

/// <summary>The health report as JSON, from the real health check of a loaded engine and of one not loaded yet.</summary>
public sealed class HealthResponseTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    [Fact]
    public async Task The_report_is_written_with_every_data_field_of_the_check()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure).LoadOnStart(false);
        services.AddLogging().AddHealthChecks().AddKvLinkHealthCheck(tags: ["ready"]);
        await using var sp = services.BuildServiceProvider();
        var health = sp.GetRequiredService<HealthCheckService>();

        using var notLoaded = await WriteAsync(await health.CheckHealthAsync());
        var root = notLoaded.RootElement;
        Assert.Equal("Unhealthy", root.GetProperty("status").GetString());
        var check = root.GetProperty("checks").GetProperty("kvlink");
        Assert.Equal("Unhealthy", check.GetProperty("status").GetString());
        Assert.Contains("not loaded", check.GetProperty("description").GetString());
        Assert.False(check.GetProperty("data").GetProperty("loaded").GetBoolean());
        Assert.Equal("ready", Assert.Single(check.GetProperty("tags").EnumerateArray()).GetString());

        var engine = sp.GetRequiredService<KvLinkEngine>();
        var report = await health.CheckHealthAsync();
        using var loaded = await WriteAsync(report);
        root = loaded.RootElement;
        Assert.Equal("Healthy", root.GetProperty("status").GetString());
        Assert.True(root.GetProperty("duration_ms").GetDouble() >= 0);
        var data = root.GetProperty("checks").GetProperty("kvlink").GetProperty("data");
        // Every field the check reported, with its JSON type: numbers as numbers, booleans as booleans.
        Assert.Equal(report.Entries["kvlink"].Data.Keys.Order(StringComparer.Ordinal), data.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.True(data.GetProperty("loaded").GetBoolean());
        Assert.Equal(engine.ModelId, data.GetProperty("model").GetString());
        Assert.Equal(0, data.GetProperty("queue_length").GetInt32());
        Assert.Equal("memory", data.GetProperty("store").GetString());
        Assert.True(data.GetProperty("store_reachable").GetBoolean());
        Assert.Equal(JsonValueKind.Number, data.GetProperty("store_entries").ValueKind);
    }

    private static async Task<JsonDocument> WriteAsync(HealthReport report)
    {
        using var stream = new MemoryStream();
        await report.WriteKvLinkJsonAsync(stream);
        return JsonDocument.Parse(stream.ToArray());
    }
}
