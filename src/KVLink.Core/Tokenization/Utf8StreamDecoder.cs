using System.Text;

namespace KVLink.Core.Tokenization;

/// <summary>Turns generated token ids into text deltas as they arrive. A token can end in the middle
/// of a multi-byte UTF-8 character (emoji and CJK often span tokens), so bytes of an unfinished
/// character are held back until the token that completes it; no delta ever contains half a character.</summary>
internal sealed class Utf8StreamDecoder
{
    private readonly LlamaTokenizer _tokenizer;
    // System.Text.Decoder keeps the incomplete trailing sequence between calls.
    private readonly Decoder _decoder = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetDecoder();

    /// <summary>Creates a decoder that reads token bytes from <paramref name="tokenizer"/>.</summary>
    public Utf8StreamDecoder(LlamaTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
    }

    /// <summary>Adds one token and returns the text it completes (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">No token has this id.</exception>
    public string Push(int id) => Decode(_tokenizer.TokenBytes(id), flush: false);

    /// <summary>Ends the stream: returns any held-back bytes as text (an unfinished character becomes
    /// U+FFFD) and resets the decoder for a new stream.</summary>
    public string Flush() => Decode([], flush: true);

    private string Decode(ReadOnlySpan<byte> bytes, bool flush)
    {
        int count = _decoder.GetCharCount(bytes, flush);
        if (count == 0)
        {
            // Still feed the bytes (and a flush) so the decoder's state advances.
            _decoder.GetChars(bytes, Span<char>.Empty, flush);
            return string.Empty;
        }
        Span<char> chars = count <= 256 ? stackalloc char[count] : new char[count];
        int written = _decoder.GetChars(bytes, chars, flush);
        return new string(chars[..written]);
    }
}
