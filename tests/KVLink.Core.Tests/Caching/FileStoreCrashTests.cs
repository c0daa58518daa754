using System.Diagnostics;
using KVLink.Core.Caching;

namespace KVLink.Core.Tests.Caching;

public sealed class FileStoreCrashTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
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

    /// <summary>Kills in the regular run; KVLINK_CRASH_KILLS sets the long run (docs/reliability.md).</summary>
    private static int Kills => int.TryParse(Environment.GetEnvironmentVariable("KVLINK_CRASH_KILLS"), out int n) && n > 0 ? n : 10;

    [Fact]
    public async Task A_writer_killed_at_random_points_many_times_leaves_only_whole_valid_entries()
    {
        string bytesDir = Path.Combine(_folder, "bytes");
        Directory.CreateDirectory(bytesDir);
        var store = new FileKvCacheStore(Path.Combine(_folder, "loop-store"), new() { StaleTempFileAge = TimeSpan.Zero });
        var expected = new Dictionary<string, KvCacheKey>();
        for (int i = 0; i < 4; i++)
        {
            var key = CacheTestData.Key($"crash-loop-{i}");
            using var entry = CacheTestData.Entry(key, tokens: 512 << i, seed: 10 + i); // 256 KiB .. 2 MiB
            string name = Path.GetFileName(store.PathOf(key));
            File.WriteAllBytes(Path.Combine(bytesDir, name + ".bin"), KvCacheFormat.Serialize(entry));
            expected[name] = key;
        }

        string helper = Path.Combine(AppContext.BaseDirectory, "KVLink.Core.CrashWriter.dll");
        var random = new Random(4242);
        int survived = 0, tempFilesLeft = 0;
        for (int kill = 0; kill < Kills; kill++)
        {
            var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { helper, "loop", bytesDir, store.Directory }) start.ArgumentList.Add(a);
            using var child = Process.Start(start)!;
            try
            {
                var line = child.StandardOutput.ReadLineAsync();
                Assert.True(await Task.WhenAny(line, Task.Delay(TimeSpan.FromSeconds(60))) == line, "the helper never started writing");
                Assert.Equal("READY", await line);
                await Task.Delay(random.Next(1, 400)); // somewhere inside a write, a flush, a rename or between them
            }
            finally
            {
                child.Kill(entireProcessTree: true);
                await child.WaitForExitAsync();
            }

            // Every entry visible is whole and valid; partial writes exist only as hidden temp files.
            tempFilesLeft += Math.Min(1, Directory.GetFiles(store.Directory, ".*.tmp").Length);
            foreach (string path in Directory.GetFiles(store.Directory, "*.kvc"))
            {
                var key = expected[Path.GetFileName(path)];
                using var got = await store.GetAsync(key);
                Assert.True(got is not null, $"kill {kill}: {Path.GetFileName(path)} is not a whole entry");
                using var want = CacheTestData.Entry(key, tokens: got!.Length, seed: 10 + int.Parse(key.DocumentId[^1..], System.Globalization.CultureInfo.InvariantCulture));
                CacheTestData.AssertSame(want, got);
            }
            Assert.Equal(0, store.Statistics.Rejected);
            store.Rescan(); // as a restart would: the dead writer's temp file goes
            survived++;
        }

        // A restart removes the dead writers' temp files and indexes only whole entries.
        var restarted = new FileKvCacheStore(store.Directory, new() { StaleTempFileAge = TimeSpan.Zero });
        Assert.Empty(Directory.GetFiles(store.Directory, ".*.tmp"));
        Assert.Equal(Directory.GetFiles(store.Directory, "*.kvc").Length, restarted.Statistics.Entries);
        Assert.True(restarted.Statistics.Entries >= 1);
        output.WriteLine($"file-store crash loop: {survived} kills survived, {tempFilesLeft} kills left a partial temp file (never visible as entries), {restarted.Statistics.Entries} whole entries after restart");
    }

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
