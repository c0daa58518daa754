using System.Text;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>Found by the tiktoken mutation run: a vocabulary without one of the 256 single-byte tokens loaded, then
/// the first text holding that byte threw KeyNotFoundException. Both tokenizer formats now refuse it at load.</summary>
public sealed class ByteCoverageTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(0x00)]
    [InlineData((int)'A')]
    [InlineData(0xFF)]
    public void A_tiktoken_file_missing_a_byte_is_refused_naming_the_byte(int missing)
    {
        var lines = Enumerable.Range(0, 256).Where(b => b != missing).Select((b, rank) => $"{Convert.ToBase64String([(byte)b])} {rank}");
        Directory.CreateDirectory(_dir.File("original"));
        File.WriteAllText(_dir.File("original/tokenizer.model"), string.Join('\n', lines) + "\n");
        var e = Assert.Throws<InvalidDataException>(() => LlamaTokenizer.FromCheckpointFolder(_dir.Path));
        Assert.Contains($"byte 0x{missing:X2}", e.Message);
        Assert.Contains("tokenizer.model", e.Message);
    }

    [Fact]
    public void A_tokenizer_json_missing_a_byte_is_refused_and_a_complete_one_encodes_every_byte()
    {
        string path = _dir.File("tokenizer.json");
        var bytes = Enumerable.Range(0, 256).Where(b => b != 'A').Select(b => new[] { (byte)b }).ToList();
        HuggingFaceTokenizerJson.Write(path, bytes, [], Llama3SpecialTokens.Create(firstId: 255));
        var e = Assert.Throws<InvalidDataException>(() => LlamaTokenizer.FromHuggingFaceJson(path));
        Assert.Contains("byte 0x41", e.Message);

        HuggingFaceTokenizerJson.Write(path, [.. Enumerable.Range(0, 256).Select(b => new[] { (byte)b })], [], Llama3SpecialTokens.Create(firstId: 256));
        var tokenizer = LlamaTokenizer.FromHuggingFaceJson(path);
        string everyByte = Encoding.Latin1.GetString([.. Enumerable.Range(1, 255).Select(b => (byte)b)]);
        Assert.NotEmpty(tokenizer.Encode(everyByte));
    }
}
