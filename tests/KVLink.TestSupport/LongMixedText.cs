using System.Text;

namespace KVLink.TestSupport;

/// <summary>The text of the tokenizer throughput benchmark and its correctness test.</summary>
internal static class LongMixedText
{
    /// <summary>About a million characters of English, accented Latin, CJK, code, emoji and astral letters, with \r\n and tabs.</summary>
    public static string Create()
    {
        var text = new StringBuilder();
        string[] parts =
        [
            "The quick brown fox jumps over the lazy dog. It's 12345 o'clock; we'll see.\n",
            "Crème brûlée à la française, naïve façade — 日本語のテキストと中文文本。\r\n",
            "    indented code(x) { return x * 42; }\n\n",
            "Emoji 😀🎉👍🏽 and 𝐇𝐞𝐥𝐥𝐨's math letters 𞓱𞓱15683411.\t\n",
        ];
        for (int i = 0; text.Length < 1_000_000; i++)
            text.Append(parts[i % parts.Length]);
        return text.ToString();
    }
}
