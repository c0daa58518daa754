using System.Globalization;

namespace KVLink.Core.Tokenization;

/// <summary>
/// The Llama 3 split pattern (<see cref="PreTokenizerPatterns.Llama3"/>) as a hand-written scanner over code points:
/// <code>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</code>
/// </summary>
/// <remarks>.NET's Regex matches UTF-16 code units, so <c>\p{L}</c> and <c>\p{N}</c> never match a surrogate
/// pair and a non-BMP letter ("𝐇") split differently from the reference tokenizers (tiktoken, Hugging Face),
/// which match code points. This scanner classifies whole code points; a lone surrogate is classed as
/// "other", as Regex would. Offsets and lengths are in UTF-16 units.</remarks>
internal static class Llama3Splitter
{
    private enum Kind : byte { Other, Letter, Number, Space, Newline }

    // Kinds of the ASCII characters, so the common case skips the Unicode tables.
    private static readonly Kind[] Ascii = BuildAscii();

    private static Kind[] BuildAscii()
    {
        var kinds = new Kind[128];
        for (int c = 0; c < 128; c++)
            kinds[c] = c is '\r' or '\n' ? Kind.Newline
                : c is ' ' or (>= '\t' and <= '\f') ? Kind.Space
                : c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') ? Kind.Letter
                : c is >= '0' and <= '9' ? Kind.Number
                : Kind.Other;
        return kinds;
    }

    /// <summary>Length in UTF-16 units of the piece that starts at <paramref name="text"/>[0] (text non-empty).</summary>
    public static int NextPiece(ReadOnlySpan<char> text)
    {
        Kind first = KindAt(text, 0, out int width);

        // (?i:'s|'t|'re|'ve|'m|'ll|'d): none is a prefix of another, so order does not matter.
        if (text[0] == '\'' && Contraction(text) is int c and > 0)
            return c;

        // [^\r\n\p{L}\p{N}]?\p{L}+: a letter run, optionally led by one character that is not a newline, letter or number.
        if (first == Kind.Letter)
            return Run(text, 0, Kind.Letter);
        if (first is Kind.Other or Kind.Space && width < text.Length && KindAt(text, width, out _) == Kind.Letter)
            return Run(text, width, Kind.Letter);

        // \p{N}{1,3}
        if (first == Kind.Number)
        {
            int end = width;
            for (int n = 1; n < 3 && end < text.Length && KindAt(text, end, out int w) == Kind.Number; n++)
                end += w;
            return end;
        }

        //  ?[^\s\p{L}\p{N}]+[\r\n]*: the optional leading space is U+0020 only.
        int start = text[0] == ' ' && text.Length > 1 && KindAt(text, 1, out _) == Kind.Other ? 1 : 0;
        if (start == 1 || first == Kind.Other)
            return Run(text, Run(text, start, Kind.Other), Kind.Newline);

        // What is left starts with whitespace. \s*[\r\n]+ ends after the last newline of the run.
        int spaceEnd = 0, lastNewline = -1;
        while (spaceEnd < text.Length)
        {
            Kind k = KindAt(text, spaceEnd, out int w);
            if (k is not (Kind.Space or Kind.Newline)) break;
            if (k == Kind.Newline) lastNewline = spaceEnd;
            spaceEnd += w;
        }
        if (lastNewline >= 0)
            return lastNewline + 1;
        // \s+(?!\S): the whole run at the end of text, else all but its last character (which
        // then joins the next word); \s+ when the run is a single character before a non-space.
        // Whitespace is always BMP, so "its last character" is one code unit.
        return spaceEnd == text.Length || spaceEnd == 1 ? spaceEnd : spaceEnd - 1;
    }

    /// <summary>Splits <paramref name="text"/> into consecutive pieces that cover it.</summary>
    public static IEnumerable<(int Offset, int Length)> Split(ReadOnlyMemory<char> text, int offset)
    {
        int at = 0;
        while (at < text.Length)
        {
            int length = NextPiece(text.Span[at..]);
            yield return (offset + at, length);
            at += length;
        }
    }

    private static int Contraction(ReadOnlySpan<char> text)
    {
        char a = text.Length > 1 ? Fold(text[1]) : '\0';
        char b = text.Length > 2 ? Fold(text[2]) : '\0';
        return a switch
        {
            's' or 't' or 'm' or 'd' => 2,
            'r' or 'v' when b == 'e' => 3,
            'l' when b == 'l' => 3,
            _ => 0,
        };
    }

    // Simple case folding as (?i) applies it in the reference engines: ASCII letters, and U+017F (long s), which folds to 's'.
    // (The Kelvin sign folds to 'k', which no contraction uses.)
    private static char Fold(char c) => c < 128 ? (char)(c is >= 'A' and <= 'Z' ? c | 0x20 : c) : c == '\u017F' ? 's' : c;

    private static int Run(ReadOnlySpan<char> text, int at, Kind kind)
    {
        while (at < text.Length && KindAt(text, at, out int w) == kind)
            at += w;
        return at;
    }

    private static Kind KindAt(ReadOnlySpan<char> text, int at, out int width)
    {
        char c = text[at];
        width = 1;
        if (c < 128)
            return Ascii[c];
        int codePoint = c;
        if (char.IsHighSurrogate(c) && at + 1 < text.Length && char.IsLowSurrogate(text[at + 1]))
        {
            codePoint = char.ConvertToUtf32(c, text[at + 1]);
            width = 2;
        }
        return CharUnicodeInfo.GetUnicodeCategory(codePoint) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Kind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Kind.Number,
            UnicodeCategory.SpaceSeparator or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator => Kind.Space,
            // U+0085 (next line) is a control character that \s includes.
            _ => codePoint == 0x85 ? Kind.Space : Kind.Other,
        };
    }
}
