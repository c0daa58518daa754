using System.Diagnostics;
using System.Text;
using KVLink.Core.Tokenization;
using Xunit;
using Xunit.Abstractions;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>Encode throughput of the Llama-3-sized tokenizer on a long mixed text. Reported, not asserted
/// tightly (the build machine is shared); it guards against an order-of-magnitude regression only.</summary>
public class EncodeThroughputTests(ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Throughput")]
    public void Encodes_a_long_text_at_a_reasonable_rate()
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
        string s = text.ToString();
        var tok = Cl100kTestData.Tokenizer;
        tok.Encode(s[..10_000]);

        var clock = Stopwatch.StartNew();
        int tokens = 0, rounds = 0;
        while (clock.Elapsed < TimeSpan.FromSeconds(2) || rounds < 2)
        {
            tokens += tok.Encode(s).Count;
            rounds++;
        }
        double mbPerSecond = rounds * Encoding.UTF8.GetByteCount(s) / clock.Elapsed.TotalSeconds / 1e6;
        output.WriteLine($"encode: {mbPerSecond:F2} MB/s UTF-8, {tokens / clock.Elapsed.TotalSeconds / 1e6:F2} M tokens/s ({rounds} x {s.Length} chars)");
        Assert.True(mbPerSecond > 0.5, $"encode ran at {mbPerSecond:F2} MB/s");
    }
}
