using System.Diagnostics;
using KVLink.Core.Caching;

namespace KVLink.Core.Tests.Caching;

public sealed class FileStoreCrashTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-crash-tests", Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task A_writer_killed_mid_write_leaves_the_old_entry_or_none_never_a_partial_one()
    {
        Directory.CreateDirectory(_folder);
        var store = new FileKvCacheStore(Path.Combine(_folder, "store"), new() { StaleTempFileAge = TimeSpan.Zero });
        var key = CacheTestData.Key("crash");
        using var old = CacheTestData.Entry(key, tokens: 5, seed: 1);
        await store.PutAsync(key, old);
        using var big = CacheTestData.Entry(key, tokens: 8192, seed: 2); // 4 MiB: several 1 MiB chunks
        string bytesFile = Path.Combine(_folder, "entry.bin");
        File.WriteAllBytes(bytesFile, KvCacheFormat.Serialize(big));

        string helper = Path.Combine(AppContext.BaseDirectory, "KVLink.Core.CrashWriter.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { helper, bytesFile, store.PathOf(key) }) start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        try
        {
            var line = child.StandardOutput.ReadLineAsync();
            Assert.True(await Task.WhenAny(line, Task.Delay(TimeSpan.FromSeconds(60))) == line, "the helper never reached the middle of its write");
            Assert.Equal("MID", await line);
        }
        finally
        {
            child.Kill(entireProcessTree: true);
            await child.WaitForExitAsync();
        }

        // The half-written temp file exists but is invisible: the old entry is still served whole.
        Assert.NotEmpty(Directory.GetFiles(store.Directory, ".*.tmp"));
        using (var got = await store.GetAsync(key)) CacheTestData.AssertSame(old, got!);
        Assert.Equal(0, store.Statistics.Rejected);

        // A restarted store cleans temp files older than StaleTempFileAge and indexes only whole entries.
        var restarted = new FileKvCacheStore(store.Directory, new() { StaleTempFileAge = TimeSpan.Zero });
        Assert.Empty(Directory.GetFiles(store.Directory, ".*.tmp"));
        Assert.Equal(1, restarted.Statistics.Entries);
    }

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
