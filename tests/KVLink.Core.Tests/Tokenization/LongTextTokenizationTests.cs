using KVLink.Core.Tokenization;
using KVLink.TestSupport;
using RegexPreTokenizer = Microsoft.ML.Tokenizers.RegexPreTokenizer;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>
/// The correctness half of the tokenizer throughput measurement, on the same long mixed text. The speed itself is
/// measured by <c>KVLink.Benchmarks --tokenizer-throughput</c>, never asserted: a shared build machine makes any
/// timing floor either meaningless or flaky.
/// </summary>
public class LongTextTokenizationTests
{
    [Fact]
    public void The_scanner_tiles_the_long_text_and_splits_its_BMP_part_exactly_like_the_Regex()
    {
        string s = LongMixedText.Create();
        var specials = Llama3SpecialTokens.Create();
        var scanner = new Llama3PreTokenizer(specials);
        int next = 0;
        foreach (var (offset, length) in scanner.PreTokenize(s))
        {
            if (offset != next || length <= 0) Assert.Fail($"piece ({offset}, {length}) does not continue at {next}");
            next = offset + length;
        }
        Assert.Equal(s.Length, next);

        // .NET's Regex sees astral letters (𝐇, 𞓱) as two surrogates, not \p{L}; the scanner reads code points, so the
        // two agree only on text without them. That is most of the text: English, accented Latin, CJK, code, \r\n.
        string bmp = string.Concat(s.Split('\n').Where(line => !line.Any(char.IsSurrogate)).Select(line => line + "\n"));
        Assert.True(bmp.Length > s.Length / 2);
        var ours = scanner.PreTokenize(bmp).ToList();
        var regex = new RegexPreTokenizer(PreTokenizerPatterns.Compile(PreTokenizerPatterns.Llama3), specials).PreTokenize(bmp).ToList();
        for (int i = 0; i < Math.Min(regex.Count, ours.Count); i++)
            if (regex[i] != ours[i])
                Assert.Fail($"piece {i}: Regex {regex[i]} '{bmp.Substring(regex[i].Offset, regex[i].Length)}', scanner {ours[i]} '{bmp.Substring(ours[i].Offset, ours[i].Length)}'");
        Assert.Equal(regex.Count, ours.Count);
    }

    [Fact]
    public void Encoding_the_long_text_round_trips()
    {
        string s = LongMixedText.Create();
        var ids = Cl100kTestData.Tokenizer.Encode(s);
        Assert.InRange(ids.Count, s.Length / 20, s.Length); // pieces merge into tokens, and nothing vanishes
        Assert.Equal(s, Cl100kTestData.Tokenizer.Decode(ids));
    }
}
