namespace KVLink.Core.Tokenization;

/// <summary>
/// Byte-level BPE can encode any text only when each of the 256 bytes is a token on its own. A vocabulary
/// missing one (a truncated or edited file) loads, and then the first text holding that byte fails inside
/// Microsoft.ML.Tokenizers with a KeyNotFoundException; so it is refused at load.
/// </summary>
internal static class ByteCoverage
{
    /// <summary>The message of the first missing single-byte token, or null when all 256 are present.</summary>
    public static string? FindGap(IEnumerable<byte[]> tokens)
    {
        var seen = new bool[256];
        foreach (byte[] t in tokens)
            if (t.Length == 1) seen[t[0]] = true;
        int missing = Array.IndexOf(seen, false);
        return missing < 0 ? null : $"byte 0x{missing:X2} has no single-byte token; byte-level BPE needs all 256";
    }
}
