using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KVLink.Core.Tokenization;

/// <summary>Pre-tokenizer for the Llama 3 split pattern: special tokens written in the text are cut out
/// whole first, then each stretch between them is split by <see cref="Llama3Splitter"/> on its own (as
/// Hugging Face and Microsoft.ML.Tokenizers do, so a stretch ends where a special token begins).</summary>
internal sealed class Llama3PreTokenizer : PreTokenizer
{
    private readonly Regex? _special;

    public Llama3PreTokenizer(IReadOnlyDictionary<string, int> specialTokens)
    {
        // Longest first, so a name that is a prefix of another never wins at the same position.
        // Names are escaped literals, so matching is linear and needs no timeout.
        if (specialTokens.Count > 0)
            _special = new Regex(
                string.Join("|", specialTokens.Keys.OrderByDescending(k => k.Length).Select(Regex.Escape)),
                RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    /// <inheritdoc/>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) =>
        string.IsNullOrEmpty(text) ? [] : Pieces(text.AsMemory());

    /// <inheritdoc/>
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) =>
        text.IsEmpty ? [] : Pieces(text.ToArray());

    private IEnumerable<(int Offset, int Length)> Pieces(ReadOnlyMemory<char> text)
    {
        int at = 0;
        if (_special is not null)
        {
            foreach (var (index, length) in Matches(_special, text.Span))
            {
                foreach (var piece in Llama3Splitter.Split(text[at..index], at))
                    yield return piece;
                yield return (index, length);
                at = index + length;
            }
        }
        foreach (var piece in Llama3Splitter.Split(text[at..], at))
            yield return piece;
    }

    // Collected up front: the span enumerator cannot live inside an iterator.
    private static List<(int Index, int Length)> Matches(Regex regex, ReadOnlySpan<char> text)
    {
        var matches = new List<(int, int)>();
        foreach (var m in regex.EnumerateMatches(text))
            matches.Add((m.Index, m.Length));
        return matches;
    }
}
