using System.Globalization;
using System.Text;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>
/// An independent, deliberately naive reading of the Llama 3 split pattern for differential tests: the regex is
/// written as a tree that mirrors its text, and a backtracking matcher (continuation passing, leftmost-first
/// alternation, greedy quantifiers) runs it over code points, as tiktoken and Hugging Face do.
/// Slow and obvious on purpose; it shares no code with the production scanner.
/// </summary>
internal static class SplitPatternReference
{
    private abstract record Node;
    private sealed record Class(Func<int, bool> Accepts) : Node;
    private sealed record Caseless(string Text) : Node;
    private sealed record Seq(params Node[] Items) : Node;
    private sealed record Alt(params Node[] Options) : Node;
    private sealed record Repeat(Node Item, int Min, int Max) : Node;
    private sealed record NotAhead(Node Item) : Node;

    private static bool IsSurrogate(int cp) => cp is >= 0xD800 and <= 0xDFFF;
    private static UnicodeCategory? Category(int cp) => IsSurrogate(cp) ? null : Rune.GetUnicodeCategory(new Rune(cp));
    private static bool L(int cp) => Category(cp) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter
        or UnicodeCategory.TitlecaseLetter or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter;
    private static bool N(int cp) => Category(cp) is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
    private static bool S(int cp) => !IsSurrogate(cp) && Rune.IsWhiteSpace(new Rune(cp));
    private static bool CrLf(int cp) => cp is '\r' or '\n';

    private static Node Opt(Node n) => new Repeat(n, 0, 1);
    private static Node Plus(Node n) => new Repeat(n, 1, int.MaxValue);
    private static Node Star(Node n) => new Repeat(n, 0, int.MaxValue);

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    private static readonly Node Pattern = new Alt(
        new Alt(new Caseless("'s"), new Caseless("'t"), new Caseless("'re"), new Caseless("'ve"), new Caseless("'m"), new Caseless("'ll"), new Caseless("'d")),
        new Seq(Opt(new Class(c => !CrLf(c) && !L(c) && !N(c))), Plus(new Class(L))),
        new Repeat(new Class(N), 1, 3),
        new Seq(Opt(new Class(c => c == ' ')), Plus(new Class(c => !S(c) && !L(c) && !N(c))), Star(new Class(CrLf))),
        new Seq(Star(new Class(S)), Plus(new Class(CrLf))),
        new Seq(Plus(new Class(S)), new NotAhead(new Class(c => !S(c)))),
        Plus(new Class(S)));

    /// <summary>The pieces as (UTF-16 offset, UTF-16 length), exactly as a regex "find all" would report them.</summary>
    public static List<(int Offset, int Length)> Split(string text)
    {
        var cps = new List<int>();
        var offsets = new List<int>();
        for (int i = 0; i < text.Length; i++)
        {
            offsets.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                cps.Add(char.ConvertToUtf32(text[i], text[++i]));
            else
                cps.Add(text[i]);
        }
        offsets.Add(text.Length);

        var pieces = new List<(int, int)>();
        int at = 0;
        while (at < cps.Count)
        {
            int end = -1;
            if (Match(Pattern, cps, at, e => { end = e; return true; }) && end > at)
            {
                pieces.Add((offsets[at], offsets[end] - offsets[at]));
                at = end;
            }
            else
                at++; // unmatched text is skipped by "find all"; the pattern never leaves any, but say so if it did
        }
        return pieces;
    }

    private static bool Match(Node node, List<int> s, int at, Func<int, bool> then) => node switch
    {
        Class c => at < s.Count && c.Accepts(s[at]) && then(at + 1),
        Caseless c => MatchCaseless(c.Text, s, at, then),
        Seq q => MatchSeq(q.Items, 0, s, at, then),
        Alt a => a.Options.Any(o => Match(o, s, at, then)),
        Repeat r => MatchRepeat(r, 0, s, at, then),
        NotAhead n => !Match(n.Item, s, at, _ => true) && then(at),
        _ => throw new InvalidOperationException(),
    };

    private static bool MatchSeq(Node[] items, int i, List<int> s, int at, Func<int, bool> then) =>
        i == items.Length ? then(at) : Match(items[i], s, at, next => MatchSeq(items, i + 1, s, next, then));

    // Greedy: try one more repetition first, fall back to stopping here.
    private static bool MatchRepeat(Repeat r, int count, List<int> s, int at, Func<int, bool> then) =>
        (count < r.Max && Match(r.Item, s, at, next => next > at && MatchRepeat(r, count + 1, s, next, then)))
        || (count >= r.Min && then(at));

    private static bool MatchCaseless(string text, List<int> s, int at, Func<int, bool> then)
    {
        for (int i = 0; i < text.Length; i++)
            if (at + i >= s.Count || IsSurrogate(s[at + i]) || Fold(s[at + i]) != Fold(text[i]))
                return false;
        return then(at + text.Length);
    }

    // Simple case folding, approximated by upper- then lower-casing: maps 'S' and U+017F (long s) to 's'.
    private static int Fold(int cp) => Rune.ToLowerInvariant(Rune.ToUpperInvariant(new Rune(cp))).Value;
}
