using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace KVLink.Benchmarks;

/// <summary>
/// The ASP.NET sample (samples/KVLink.AspNetCore, built with this program: the project references it without its
/// assembly) started as a child process on a free loopback port, as a user starts it: <c>dotnet KVLink.AspNetCore.Sample.dll</c>
/// from its output folder (so its appsettings.json applies), the demo model by default, options overridden through
/// environment variables (<c>KvLink__MaxRunningSequences=1</c>), which is how the sample binds its <c>KvLink</c> section.
/// A separate process keeps the clients' threads, allocations and GC out of the server's timings.
/// </summary>
internal sealed class SampleServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Queue<string> _log = new();

    private SampleServer(Process process, Uri address) => (_process, Address) = (process, address);

    /// <summary>http://127.0.0.1:port/</summary>
    public Uri Address { get; }

    /// <summary>The last lines the server wrote (for error messages).</summary>
    public string Tail { get { lock (_log) return string.Join('\n', _log); } }

    /// <summary>Starts the sample and returns once GET /health answers 200 (the model is loaded when the host starts).</summary>
    public static async Task<SampleServer> StartAsync(IReadOnlyDictionary<string, string> environment, TimeSpan timeout)
    {
        string app = FindApp();
        int port = FreePort();
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            WorkingDirectory = Path.GetDirectoryName(app)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { app, "--Port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--Logging:LogLevel:Default", "Warning", "--Logging:LogLevel:KVLink.Core", "Warning" })
            start.ArgumentList.Add(arg);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {app}");
        var server = new SampleServer(process, new Uri($"http://127.0.0.1:{port}/"));
        process.OutputDataReceived += (_, e) => server.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => server.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(5) };
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (process.HasExited)
                throw new InvalidOperationException($"the sample exited with code {process.ExitCode} before it was ready:\n{server.Tail}");
            try
            {
                using var health = await http.GetAsync("health");
                if (health.StatusCode == HttpStatusCode.OK) return server;
            }
            catch (HttpRequestException) { } // not listening yet
            catch (TaskCanceledException) { }
            await Task.Delay(200);
        }
        await server.DisposeAsync();
        throw new TimeoutException($"the sample was not healthy after {timeout.TotalSeconds:F0} s:\n{server.Tail}");
    }

    /// <summary>
    /// The sample's built assembly: samples/KVLink.AspNetCore/bin/{configuration}/{framework}/, the configuration and
    /// framework being this program's own (its output folder is benchmarks/KVLink.Benchmarks/bin/{configuration}/{framework}/).
    /// </summary>
    public static string FindApp()
    {
        var own = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string framework = own.Name, configuration = own.Parent?.Name ?? "Release";
        for (var dir = own; dir is not null; dir = dir.Parent)
        {
            string project = Path.Combine(dir.FullName, "samples", "KVLink.AspNetCore");
            if (!Directory.Exists(project)) continue;
            string app = Path.Combine(project, "bin", configuration, framework, "KVLink.AspNetCore.Sample.dll");
            return File.Exists(app) ? app : throw new FileNotFoundException($"{app} is missing: build the benchmarks (they build the sample) or `dotnet build -c {configuration} samples/KVLink.AspNetCore`.");
        }
        throw new DirectoryNotFoundException($"samples/KVLink.AspNetCore was not found above {own.FullName}.");
    }

    // The port is free when asked; the sample binds it a moment later (a race only with another process doing the same).
    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private void Keep(string? line)
    {
        if (line is null) return;
        lock (_log)
        {
            _log.Enqueue(line);
            if (_log.Count > 40) _log.Dequeue();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process.Dispose();
    }
}
