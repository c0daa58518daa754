using KVLink.Core.Native;

namespace KVLink.Core.Tests;

/// <summary>A fresh folder under the temp directory, deleted on dispose. Also makes TorchSharp loadable.</summary>
public sealed class TempFolder : IDisposable
{
    static TempFolder() => TorchSharpLoader.EnsureLoaded();

    public TempFolder()
    {
        TorchSharpLoader.EnsureLoaded();
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "kvlink-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
