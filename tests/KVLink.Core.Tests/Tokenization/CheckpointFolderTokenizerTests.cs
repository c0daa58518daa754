using KVLink.Core.Tokenization;
using Xunit;

namespace KVLink.Core.Tests.Tokenization;

public sealed class CheckpointFolderTokenizerTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void PrefersTokenizerJson()
    {
        TinyByteLevelTokenizer.Write(_dir.Path);
        WriteTiktoken();
        var tok = LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        Assert.Equal(302, tok.VocabSize);
    }

    [Fact]
    public void FallsBackToOriginalTiktokenModelWithLlama3Specials()
    {
        WriteTiktoken();
        var tok = LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        Assert.Equal(128256, tok.VocabSize);
        Assert.Equal([128000], tok.Encode("<|begin_of_text|>"));
        Assert.Equal(Cl100kTestData.Tokenizer.Encode("Hello there"), tok.Encode("Hello there"));
    }

    [Fact]
    public void EmptyFolderIsFileNotFoundNamingTheFolder()
    {
        var e = Assert.Throws<FileNotFoundException>(() => LlamaTokenizer.FromCheckpointFolder(_dir.Path));
        Assert.Contains(_dir.Path, e.Message);
    }

    private void WriteTiktoken()
    {
        Directory.CreateDirectory(_dir.File("original"));
        using var source = Cl100kTestData.OpenTiktoken();
        using var file = File.Create(Path.Combine(_dir.Path, "original", "tokenizer.model"));
        source.CopyTo(file);
    }
}
