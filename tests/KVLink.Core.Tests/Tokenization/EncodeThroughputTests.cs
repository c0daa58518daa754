using System.Diagnostics;
using System.Text;
using KVLink.Core.Tokenization;
using Microsoft.ML.Tokenizers;
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
        string s = LongText();
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

    [Fact]
    [Trait("Category", "Throughput")]
    public void Scanner_pre_tokenizes_about_as_fast_as_Regex()
    {
        // Interleaved A/B in one process, so load from other builds affects both sides alike.
        string s = LongText();
        var specials = Llama3SpecialTokens.Create();
        PreTokenizer scanner = new Llama3PreTokenizer(specials);
        PreTokenizer regex = new RegexPreTokenizer(PreTokenizerPatterns.Compile(PreTokenizerPatterns.Llama3), specials);
        var times = new double[2];
        for (int round = 0; round < 6; round++)
        {
            foreach (var (which, pre) in new[] { (0, scanner), (1, regex) })
            {
                var clock = Stopwatch.StartNew();
                int pieces = pre.PreTokenize(s).Count();
                if (round > 0) times[which] += clock.Elapsed.TotalSeconds;
                Assert.True(pieces > 0);
            }
        }
        double mb = 5 * Encoding.UTF8.GetByteCount(s) / 1e6;
        output.WriteLine($"pre-tokenize: scanner {mb / times[0]:F1} MB/s, Regex {mb / times[1]:F1} MB/s");
        Assert.True(times[0] < 3 * times[1], $"scanner {times[0]:F2} s vs Regex {times[1]:F2} s");
    }

    private static string LongText()
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
