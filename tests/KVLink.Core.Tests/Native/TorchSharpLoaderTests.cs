using System.Buffers.Binary;
using System.Text;
using KVLink.Core.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Native;

public class TorchSharpLoaderTests
{
    [Fact]
    public void TorchSharp_loads_and_computes()
    {
        // Fails loudly with the loader's real reason rather than skipping.
        if (TestAssemblyInit.LoadError is { } e) throw new Xunit.Sdk.XunitException($"TorchSharp did not load: {e.Message}");
        TorchSharpLoader.EnsureLoaded();
        using var a = tensor(new float[] { 1, 2, 3, 4 }, [2, 2]);
        using var b = a.matmul(a);
        Assert.Equal(new float[] { 7, 10, 15, 22 }, b.data<float>().ToArray());
    }

    [LinuxX64Fact] // the loader only patches on Linux x64; elsewhere its paths stay null
    public void Patches_a_private_copy_only_where_the_system_libstdcxx_lacks_the_version()
    {
        TorchSharpLoader.EnsureLoaded();
        string? libstdcxx = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib64/libstdc++.so.6" }.FirstOrDefault(File.Exists);
        Assert.NotNull(libstdcxx);
        bool systemHasVersion = Encoding.ASCII.GetString(File.ReadAllBytes(libstdcxx!)).Contains("GLIBCXX_3.4.32");

        if (systemHasVersion)
        {
            Assert.Null(TorchSharpLoader.PatchedLibraryPath);
            return;
        }
        string patched = TorchSharpLoader.PatchedLibraryPath!;
        Assert.NotNull(patched);
        string original = Path.Combine(TorchSharpLoader.OriginalLibraryDirectory!, "libLibTorchSharp.so");
        Assert.NotEqual(Path.GetFullPath(Path.GetDirectoryName(original)!), Path.GetFullPath(Path.GetDirectoryName(patched)!));

        // The copy differs from the original in exactly one byte: the flags of the GLIBCXX_3.4.32 need.
        byte[] a = File.ReadAllBytes(original), b = File.ReadAllBytes(patched);
        Assert.Equal(a.Length, b.Length);
        var diffs = Enumerable.Range(0, a.Length).Where(i => a[i] != b[i]).ToList();
        Assert.Single(diffs);
        Assert.Equal(a[diffs[0]] | 0x2, b[diffs[0]]);
        // And the original in the application folder is untouched: it still requires the version strongly.
        Assert.Equal(0, a[diffs[0]] & 0x2);
    }

    [Fact]
    public void Patcher_rejects_non_elf_input() =>
        Assert.Throws<InvalidDataException>(() => ElfVersionPatcher.MarkWeak(new byte[100], new HashSet<string> { "X" }));

    [LinuxX64Fact] // patches TorchSharp's Linux x64 library, whose folder the loader finds only there
    public void Patcher_is_idempotent_on_TorchSharps_library()
    {
        TorchSharpLoader.EnsureLoaded();
        Assert.NotNull(TorchSharpLoader.OriginalLibraryDirectory);
        string original = Path.Combine(TorchSharpLoader.OriginalLibraryDirectory!, "libLibTorchSharp.so");
        byte[] bytes = File.ReadAllBytes(original);
        var versions = new HashSet<string> { "GLIBCXX_3.4.32" };
        Assert.Equal(1, ElfVersionPatcher.MarkWeak(bytes, versions));
        Assert.Equal(0, ElfVersionPatcher.MarkWeak(bytes, versions));
        Assert.Equal(0, ElfVersionPatcher.MarkWeak(bytes, new HashSet<string> { "NOT_A_VERSION" }));
    }
}
