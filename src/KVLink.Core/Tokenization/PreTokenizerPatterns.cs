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
}
