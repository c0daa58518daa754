namespace KVLink.Core.Tokenization;

/// <summary>The GPT-2 byte-level alphabet used by Hugging Face byte-level BPE: every byte is shown
/// as one printable character, so vocabularies and merges can be stored as JSON strings.</summary>
/// <remarks>Printable Latin-1 bytes map to themselves; the other 68 bytes (control characters,
/// space, 0x7F..0xA0, 0xAD) map to U+0100 upwards in byte order, so a space becomes 'Ġ'.</remarks>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildByteToChar();
    private static readonly Dictionary<char, byte> CharToByte =
        Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    /// <summary>The character that stands for <paramref name="b"/>.</summary>
    public static char ToChar(byte b) => ByteToChar[b];

    /// <summary>Writes bytes in the byte-level alphabet (one character per byte).</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
            chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>Reads a byte-level string back into bytes.</summary>
    /// <returns>False when a character is outside the 256-character alphabet.</returns>
    public static bool TryDecode(string text, out byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(text);
        bytes = new byte[text.Length];
        for (int i = 0; i < text.Length; i++)
        {
            if (!CharToByte.TryGetValue(text[i], out bytes[i]))
            {
                bytes = [];
                return false;
            }
        }
        return true;
    }
}
