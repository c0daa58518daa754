using System.Text;

namespace KVLink.Core.Tokenization;

/// <summary>Turns generated token ids into text deltas as they arrive. A token can end in the middle
/// of a multi-byte UTF-8 character (emoji and CJK often span tokens), so bytes of an unfinished
/// character are held back until the token that completes it; no delta ever contains half a character.</summary>
internal sealed class Utf8StreamDecoder
{
    private readonly LlamaTokenizer _tokenizer;
    // System.Text.Decoder keeps the incomplete trailing sequence between calls.
    private readonly Decoder _decoder;

    /// <summary>Creates a decoder that reads token bytes from <paramref name="tokenizer"/>.</summary>
    /// <param name="tokenizer">Supplies each token's bytes.</param>
    /// <param name="dropInvalid">False (default): bytes that are not valid UTF-8 become U+FFFD. True: they are dropped, so a
    /// sampled stray byte never shows up as U+FFFD in the text (a U+FFFD the model spells out in full is kept).</param>
    public Utf8StreamDecoder(LlamaTokenizer tokenizer, bool dropInvalid = false)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        var encoding = (Encoding)new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).Clone();
        if (dropInvalid) encoding.DecoderFallback = new DecoderReplacementFallback(string.Empty);
        _decoder = encoding.GetDecoder();
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
