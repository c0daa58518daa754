using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace KVLink.Core.Tokenization;

/// <summary>Regular expressions that split text into pieces before BPE runs on each piece.</summary>
internal static class PreTokenizerPatterns
{
    /// <summary>The Llama 3 split pattern (same pieces as tiktoken's cl100k_base).</summary>
    public const string Llama3 =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The GPT-2 pattern a Hugging Face ByteLevel pre-tokenizer applies when <c>use_regex</c> is true.</summary>
    public const string Gpt2 = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    /// <summary>The pre-tokenizer for a split pattern: the code-point scanner for the Llama 3 pattern (Regex
    /// would split non-BMP letters and digits differently from the reference tokenizers), Regex otherwise.</summary>
    /// <param name="pattern">Split pattern.</param>
    /// <param name="specialTokens">Tokens cut out whole before splitting.</param>
    public static PreTokenizer Create(string pattern, IReadOnlyDictionary<string, int> specialTokens) =>
        pattern == Llama3 ? new Llama3PreTokenizer(specialTokens) : new RegexPreTokenizer(Compile(pattern), specialTokens);

    /// <summary>Compiles a pattern; patterns may come from untrusted files, so matching is time-bounded.</summary>
    public static Regex Compile(string pattern) =>
        new(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(5));

    /// <summary>Texts whose every position is tried for an empty match: letters, digits, marks, spaces, newlines, CJK.</summary>
    private static readonly string[] Probes = ["", " hello wörld's 12345 !? 日本\r\n\n\t  x", "A", "1", " ", "\n", "!", "日"];

    /// <summary>
    /// Throws when the pattern matches the empty string at a position of <see cref="Probes"/>: Microsoft.ML.Tokenizers'
    /// pre-tokenizer restarts at the end of each match, so an empty match makes Encode loop forever (found by the
    /// tokenizer.json mutation run: one ']' turned into '2' did it). Probing cannot prove a pattern never matches empty,
    /// only that it does not on these texts, which contain every character class a split pattern distinguishes.
    /// </summary>
    /// <exception cref="InvalidDataException">The pattern matches the empty string, or probing it timed out.</exception>
    public static void RejectEmptyMatches(Regex split)
    {
        try
        {
            foreach (string text in Probes)
                for (int i = 0; i <= text.Length; i++)
                    if (split.Match(text, i) is { Success: true, Length: 0 } m)
                        throw new InvalidDataException($"the pre_tokenizer split pattern matches the empty string (at {m.Index} of a probe text); it must consume at least one character.");
        }
        catch (RegexMatchTimeoutException e)
        {
            throw new InvalidDataException("the pre_tokenizer split pattern took too long to match a short probe text.", e);
        }
    }
}
