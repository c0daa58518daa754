using System.Diagnostics;
using System.Runtime.InteropServices;
using KVLink.Core.Caching;

namespace KVLink.Core.Tests.Caching;

/// <summary>
/// Things other than the store's own files under an entry's name (a FIFO, a symlink, a directory), and files the
/// store cannot delete. Real files on the real file system; Linux only where the mechanism is (mkfifo, chattr).
/// </summary>
public sealed partial class FileStoreHostileFilesTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kvlink-hostile-files", Guid.NewGuid().ToString("N"));
    private readonly List<string> _immutable = [];

    [LibraryImport("libc", EntryPoint = "mkfifo", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MkFifo(string path, uint mode);

    private static void Run(string file, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true })!;
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: {error}");
    }

    [Fact]
    public async Task A_FIFO_under_an_entry_name_is_a_rejected_miss_at_once_and_a_write_replaces_it()
    {
        Assert.True(OperatingSystem.IsLinux(), "FIFOs are tested on Linux");
        var store = new FileKvCacheStore(_folder);
        var key = CacheTestData.Key("piped");
        Assert.Equal(0, MkFifo(store.PathOf(key), 0b110_110_110));
        Assert.True(File.Exists(store.PathOf(key)));

        // A plain open would wait for a writer forever; the bound turns a regression into a failure, not a hang.
        var read = Task.Run(async () => await store.GetAsync(key));
        Assert.Same(read, await Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(10))));
        Assert.Null(await read);
        Assert.Equal((1L, 1L), (store.Statistics.Misses, store.Statistics.Rejected));

        using var entry = CacheTestData.Entry(key);
        await store.PutAsync(key, entry);
        using var back = await store.GetAsync(key);
        CacheTestData.AssertSame(entry, back!);
    }

    [Fact]
    public async Task A_symlink_under_an_entry_name_is_refused_even_when_it_points_at_a_valid_entry()
    {
        var store = new FileKvCacheStore(_folder);
        var real = CacheTestData.Key("real");
        using var entry = CacheTestData.Entry(real);
        await store.PutAsync(real, entry);
        // A second store's valid entry of the same key, reached through a link from this one.
        string elsewhere = Path.Combine(_folder, "elsewhere.bin");
        File.Copy(store.PathOf(real), elsewhere);
        File.Delete(store.PathOf(real));
        File.CreateSymbolicLink(store.PathOf(real), elsewhere);

        Assert.Null(await store.GetAsync(real));
        Assert.Equal(1, store.Statistics.Rejected);
        // A directory under the name is refused the same way.
        var dir = CacheTestData.Key("dir");
        Directory.CreateDirectory(store.PathOf(dir));
        Assert.Null(await store.GetAsync(dir));
        Assert.Equal(2, store.Statistics.Rejected);
    }

    [Fact]
    public async Task Removing_an_entry_the_file_system_will_not_delete_throws_and_the_entry_is_reported_not_gone()
    {
        // Tests run as root, which permission bits do not stop; the immutable attribute (chattr +i, ext4/xfs/btrfs) stops root too.
        Assert.True(OperatingSystem.IsLinux(), "immutable files are tested on Linux");
        var store = new FileKvCacheStore(_folder);
        var stuck = CacheTestData.Key("stuck");
        var free = CacheTestData.Key("free");
        using (var e = CacheTestData.Entry(stuck)) await store.PutAsync(stuck, e);
        using (var e = CacheTestData.Entry(free)) await store.PutAsync(free, e);
        Run("chattr", "+i", store.PathOf(stuck));
        _immutable.Add(store.PathOf(stuck));

        await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(async () => await store.RemoveAsync(stuck));
        Assert.True(await store.ContainsAsync(stuck));

        // Invalidation removes what it can, then says that something survived.
        var error = await Assert.ThrowsAsync<KvCacheStoreUnavailableException>(async () => await store.InvalidateAsync(new KvCacheScope(Tenant: stuck.Tenant)));
        Assert.Contains("removed 1 entries but not all", error.Message, StringComparison.Ordinal);
        Assert.False(await store.ContainsAsync(free));
        Assert.True(await store.ContainsAsync(stuck));
        Assert.Equal(1, store.Statistics.Removals);

        Run("chattr", "-i", store.PathOf(stuck));
        _immutable.Clear();
        Assert.True(await store.RemoveAsync(stuck));
    }

    public void Dispose()
    {
        foreach (string path in _immutable) Run("chattr", "-i", path);
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
