using System.Text;
using KVLink.Core.Tokenization;
using Xunit;

namespace KVLink.Core.Tests.Tokenization;

public sealed class Utf8StreamDecoderTests : IDisposable
{
    // 2-byte (é, ö), 3-byte (日, 本, €) and 4-byte (😀, 🎉) characters.
    private const string Text = "Héllo wörld € 日本 😀🎉 done";

    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void ByteTokensThatSplitCharactersNeverYieldHalfACharacter()
    {
        var tok = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(_dir.Path));
        // One token per byte: every multi-byte character is split across tokens.
        var ids = Encoding.UTF8.GetBytes(Text).Select(b => (int)b).ToList();
        var deltas = PushAll(new Utf8StreamDecoder(tok), ids);
        Assert.Equal(Text, string.Concat(deltas));
        Assert.DoesNotContain(deltas, d => d.Contains('\uFFFD'));
        Assert.Contains(deltas, d => d.Length == 0);
        Assert.DoesNotContain(deltas, d => d.Length > 0 && char.IsHighSurrogate(d[^1]));
    }

    [Fact]
    public void RealTokenizationOfEmojiAndCjk()
    {
        var tok = Cl100kTestData.Tokenizer;
        var ids = tok.Encode(Text);
        // The test is only meaningful if some token holds part of a character.
        Assert.Contains(ids, id => !IsCompleteUtf8(tok.TokenBytes(id).ToArray()));
        var deltas = PushAll(new Utf8StreamDecoder(tok), ids);
        Assert.Equal(Text, string.Concat(deltas));
        Assert.DoesNotContain(deltas, d => d.Contains('\uFFFD'));
    }

    [Fact]
    public void FlushEmitsReplacementForUnfinishedCharacterAndResets()
    {
        var tok = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(_dir.Path));
        var decoder = new Utf8StreamDecoder(tok);
        Assert.Equal("", decoder.Push(0xF0));
        Assert.Equal("", decoder.Push(0x9F));
        Assert.Equal("\uFFFD", decoder.Flush());
        Assert.Equal("a", decoder.Push('a'));
        Assert.Equal("<|eot_id|>", decoder.Push(TinyByteLevelTokenizer.EotId));
    }

    private static List<string> PushAll(Utf8StreamDecoder decoder, IEnumerable<int> ids)
    {
        var deltas = ids.Select(decoder.Push).ToList();
        deltas.Add(decoder.Flush());
        return deltas;
    }

    private static bool IsCompleteUtf8(byte[] bytes)
    {
        try { new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); return true; }
        catch (DecoderFallbackException) { return false; }
    }
}
