using System.Runtime.InteropServices;
using KVLink.Core.Engine;
using KVLink.Core.Native;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Native;

/// <summary>
/// The errors a newcomer meets first: a model path that does not exist, and a missing LibTorch runtime package.
/// </summary>
public sealed class MissingRuntimeMessageTests
{
    [Fact]
    public async Task Loading_a_folder_that_does_not_exist_names_the_folder_not_the_tokenizer()
    {
        string relative = Path.Combine("models", "no-such-model-" + Guid.NewGuid().ToString("N"));
        var e = await Assert.ThrowsAsync<DirectoryNotFoundException>(() => KvLinkEngine.LoadAsync(relative));
        Assert.Contains($"'{Path.GetFullPath(relative)}'", e.Message);
        Assert.Contains("does not exist", e.Message);
        Assert.Contains(Directory.GetCurrentDirectory(), e.Message);   // a relative path says where it was resolved from
        Assert.DoesNotContain("tokenizer", e.Message, StringComparison.OrdinalIgnoreCase);

        var t = Assert.Throws<DirectoryNotFoundException>(() => LlamaTokenizer.FromCheckpointFolder(relative));
        Assert.Contains("does not exist", t.Message);
    }

    /// <summary>
    /// The loader's own failure, not a hand-written string: loading a library from an empty folder gives the real
    /// <see cref="DllNotFoundException"/> text of this platform ("...: cannot open shared object file: No such file or
    /// directory" on Linux), which is what a missing <c>libtorch.so</c> gives when libLibTorchSharp is loaded without
    /// TorchSharp-cpu. What this covers: the message built from that real text. What it cannot: the missing-runtime path end
    /// to end, since this test process already has LibTorch loaded (a library found by soname never fails again here).
    /// </summary>
    [Fact]
    public void A_LibTorch_library_the_loader_cannot_find_is_reported_as_a_missing_runtime_package()
    {
        using var empty = new TempFolder();
        string missing = empty.File("libtorch.so");
        var real = Assert.Throws<DllNotFoundException>(() => NativeLibrary.Load(missing));

        string message = TorchSharpLoader.LoadFailureMessage(empty.File("libLibTorchSharp.so"), real.Message);
        Assert.Contains("TorchSharp-cpu", message);
        Assert.Contains("TorchSharp-cuda-linux", message);
        Assert.Contains("dotnet add package TorchSharp-cpu", message);
        Assert.Contains(real.Message, message);   // the loader's reason stays in the message

        // A failure that is not a missing LibTorch library keeps the loader's own words, with no package advice.
        string other = TorchSharpLoader.LoadFailureMessage("/x/libLibTorchSharp.so", "/x/libLibTorchSharp.so: invalid ELF header");
        Assert.DoesNotContain("TorchSharp-cpu", other);
        Assert.Contains("invalid ELF header", other);
    }
}
