using System.Diagnostics;
using System.Text.Json;

namespace KVLink.AspNetCore.Tests;

/// <summary>
/// The server driven by the official npm <c>openai</c> package (tests/js/openai-sdk-check.mjs, pinned by its lockfile):
/// every success and error case reaches the JavaScript SDK as it expects, with 0 empty-bodied responses and 0 500s.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class NpmClientTests(KvLinkServer server, Xunit.Abstractions.ITestOutputHelper output)
{
    [NodeFact]
    public async Task The_npm_openai_client_reads_every_answer_and_every_error()
    {
        var start = new ProcessStartInfo("node") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = NodeFactAttribute.Folder };
        start.ArgumentList.Add("openai-sdk-check.mjs");
        start.ArgumentList.Add(server.BaseAddress.ToString().TrimEnd('/'));
        using var node = Process.Start(start)!;
        var stdout = node.StandardOutput.ReadToEndAsync();
        var stderr = node.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        try { await node.WaitForExitAsync(timeout.Token); }
        catch (OperationCanceledException) { node.Kill(entireProcessTree: true); Assert.Fail("the npm client check did not finish in 3 minutes"); }
        Assert.True(node.ExitCode == 0, $"node exited with {node.ExitCode}: {await stderr}");

        var report = JsonDocument.Parse((await stdout).Trim().Split('\n')[^1]).RootElement;
        foreach (var c in report.GetProperty("cases").EnumerateArray())
            output.WriteLine($"{(c.GetProperty("ok").GetBoolean() ? "ok  " : "FAIL")} {c.GetProperty("name").GetString()}: {c.GetProperty("detail")}");
        var failed = report.GetProperty("cases").EnumerateArray().Where(c => !c.GetProperty("ok").GetBoolean())
            .Select(c => $"{c.GetProperty("name").GetString()}: {c.GetProperty("detail").GetString()}").ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed));
        Assert.True(report.GetProperty("cases").GetArrayLength() > 60);
        Assert.Equal(0, report.GetProperty("emptyBodies").GetInt32());
        Assert.Equal(0, report.GetProperty("serverErrors").GetInt32());
    }
}

/// <summary>
/// A test that needs node and tests/js installed (tests/js/install.sh): skipped, with the reason, only when they are
/// absent; with KVLINK_REQUIRE_NODE=1 (set by .ci/run, which runs the install) it always runs, so a failed install
/// shows up as a failed test rather than a skipped one.
/// </summary>
public sealed class NodeFactAttribute : FactAttribute
{
    public NodeFactAttribute()
    {
        if (Reason is { } reason) Skip = reason;
    }

    /// <summary>tests/js of this checkout.</summary>
    public static string Folder
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "KVLink.Core.sln"))) return Path.Combine(dir.FullName, "tests", "js");
            throw new DirectoryNotFoundException("KVLink.Core.sln was not found above " + AppContext.BaseDirectory);
        }
    }

    private static string? Reason =>
        !Directory.Exists(Path.Combine(Folder, "node_modules", "openai")) && Environment.GetEnvironmentVariable("KVLINK_REQUIRE_NODE") != "1"
            ? "tests/js is not installed: run tests/js/install.sh (installs node when absent, then npm ci), or .ci/run, which does"
            : null;
}
