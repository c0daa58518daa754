using System.Globalization;
using System.Text;
using KVLink.Core.Tokenization;
using Xunit;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>The code-point scanner against <see cref="SplitPatternReference"/> (a backtracking reading of the same
/// regex) on generated text, and against .NET's Regex where Regex is right (text without surrogates).</summary>
public class Llama3SplitterTests
{
    private static List<(int, int)> Scanner(string text) => [.. Llama3Splitter.Split(text.AsMemory(), 0)];

    private static string[] Pieces(string text, IEnumerable<(int Offset, int Length)> split) =>
        [.. split.Select(p => text.Substring(p.Offset, p.Length))];

    [Theory]
    [InlineData("𝐇𝐞𝐥𝐥𝐨's", new[] { "𝐇𝐞𝐥𝐥𝐨", "'s" })]
    [InlineData("\U0001E4D0'll", new[] { "\U0001E4D0", "'ll" })]
    [InlineData("𞓱𞓱15683411", new[] { "𞓱𞓱1", "568", "341", "1" })]
    [InlineData("a 𝐇b", new[] { "a", " 𝐇b" })]
    [InlineData("x😀y", new[] { "x", "😀y" })]
    [InlineData("I'M here, we'RE 'Ll", new[] { "I", "'M", " here", ",", " we", "'RE", " '", "Ll" })]
    [InlineData("it'ſ", new[] { "it", "'ſ" })]
    [InlineData("a  \n\n b\t\tc  ", new[] { "a", "  \n\n", " b", "\t", "\tc", "  " })]
    public void Splits_code_points_like_the_reference_tokenizers(string text, string[] expected)
    {
        Assert.Equal(expected, Pieces(text, Scanner(text)));
        Assert.Equal(expected, Pieces(text, SplitPatternReference.Split(text)));
    }

    [Fact]
    public void A_lone_surrogate_is_neither_letter_nor_number()
    {
        // Built in code: attribute strings cannot carry a lone surrogate.
        string text = "x" + '\ud800' + "y1";
        string[] expected = ["x", "\ud800y", "1"];
        Assert.Equal(expected, Pieces(text, Scanner(text)));
        Assert.Equal(expected, Pieces(text, SplitPatternReference.Split(text)));
    }

    [Fact]
    public void Agrees_with_the_backtracking_reference_on_100000_generated_strings()
    {
        var random = new Random(15);
        var generator = new TextGenerator(random);
        var failures = new List<string>();
        int differences = 0;
        for (int i = 0; i < 100_000; i++)
        {
            string text = generator.Next();
            var expected = SplitPatternReference.Split(text);
            var actual = Scanner(text);
            if (!expected.SequenceEqual(actual) && differences++ < 5)
                failures.Add($"{Escape(text)}: expected [{string.Join(", ", Pieces(text, expected).Select(Escape))}], got [{string.Join(", ", Pieces(text, actual).Select(Escape))}]");
        }
        Assert.True(differences == 0, $"{differences} differences, first ones:\n" + string.Join("\n", failures));
    }

    [Fact]
    public void Agrees_with_Regex_on_text_without_surrogates()
    {
        // Regex is code-unit based, which only matters for surrogates. It does not fold U+017F to 's' under (?i)
        // (the reference engines do), so long s is left out here; the theory above covers it.
        var regex = PreTokenizerPatterns.Compile(PreTokenizerPatterns.Llama3);
        var generator = new TextGenerator(new Random(16), bmpOnly: true);
        for (int i = 0; i < 20_000; i++)
        {
            string text = generator.Next().Replace('\u017F', 's');
            var expected = regex.Matches(text).Select(m => (m.Index, m.Length)).ToList();
            Assert.True(expected.SequenceEqual(Scanner(text)), Escape(text));
        }
    }

    [Fact]
    public void Both_tokenizer_routes_split_with_the_scanner()
    {
        using var dir = new TempFolder();
        var json = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(dir.Path));
        string text = "𝐇𝐞𝐥𝐥𝐨's<|eot_id|> 𞓱𞓱15683411";
        string[] expected = ["𝐇𝐞𝐥𝐥𝐨", "'s", "<|eot_id|>", " ", "𞓱𞓱1", "568", "341", "1"];
        Assert.Equal(expected, Pieces(text, json.InnerTokenizer.PreTokenizer!.PreTokenize(text)));
        Assert.Equal(expected, Pieces(text, Cl100kTestData.Tokenizer.InnerTokenizer.PreTokenizer!.PreTokenize(text.AsSpan())));
        var tok = Cl100kTestData.Tokenizer;
        Assert.Equal([.. tok.Encode("𝐇𝐞𝐥𝐥𝐨"), .. tok.Encode("'s")], tok.Encode("𝐇𝐞𝐥𝐥𝐨's"));
    }

    private static string Escape(string s)
    {
        var b = new StringBuilder("\"");
        foreach (char c in s)
            b.Append(c is >= ' ' and < '\x7f' ? c.ToString() : $"\\u{(int)c:X4}");
        return b.Append('"').ToString();
    }

    /// <summary>Strings mixing every general category, non-BMP letters and digits, marks, emoji, contractions in
    /// both cases, whitespace runs and newlines, and the odd lone surrogate.</summary>
    private sealed class TextGenerator(Random random, bool bmpOnly = false)
    {
        private static readonly int[][] ByCategory = SampleCategories();

        private static readonly string[] Atoms =
        [
            "'", "'", "'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'lL", "'d", "'D", "'ſ", "'x",
            " ", " ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", "\u000B", "\u000C", "\u0085", "\u00A0", "\u2028", "\u2029", "\u3000", "\u2003",
            "a", "Z", "hello", "It", "7", "42", "12345", ".", ",", "!?", "(", "-", "_", "$",
            "é", "ß", "日本", "Ж", "ǅ", "ʰ", "ſ", "²", "½", "Ⅻ", "٣", "\u0301", "\u0903", "\u20DD", "\u200B", "\u00AD", "\u200D", "\uFE0F",
            "𝐇", "𝐞𝐥", "𐐀", "\U0001E4D0", "𠀀", "𝟏", "𞓱", "𐄇", "𐍁", "😀", "👍🏽", "🏽", "👨‍👩‍👧", "\U000E0001", "\U000F0000",
        ];

        public string Next()
        {
            var text = new StringBuilder();
            int atoms = random.Next(0, 16);
            for (int i = 0; i < atoms; i++)
            {
                int roll = random.Next(10);
                if (roll < 6)
                    text.Append(Atoms[random.Next(Atoms.Length)]);
                else if (roll < 9)
                {
                    var pool = ByCategory[random.Next(ByCategory.Length)];
                    AppendCodePoint(text, pool[random.Next(pool.Length)]);
                }
                else if (!bmpOnly && random.Next(4) == 0)
                    text.Append((char)random.Next(0xD800, 0xE000)); // lone surrogate (or half of an accidental pair)
                else
                    AppendCodePoint(text, random.Next(0, 0x110000));
            }
            string s = text.ToString();
            return bmpOnly ? new string([.. s.Where(c => !char.IsSurrogate(c))]) : s;
        }

        private static void AppendCodePoint(StringBuilder text, int cp)
        {
            if (cp is >= 0xD800 and <= 0xDFFF)
                text.Append((char)cp);
            else
                text.Append(char.ConvertFromUtf32(cp));
        }

        // Up to 64 code points of every general category, spread over the whole code space.
        private static int[][] SampleCategories()
        {
            var lists = Enumerable.Range(0, 30).Select(_ => new List<int>()).ToArray();
            for (int cp = 0; cp < 0x110000; cp += 7)
            {
                var list = lists[(int)CharUnicodeInfo.GetUnicodeCategory(cp)];
                if (list.Count < 64 || cp % 1000 < 7 && list.Count < 256)
                    list.Add(cp);
            }
            return [.. lists.Where(l => l.Count > 0).Select(l => l.ToArray())];
        }
    }
}
