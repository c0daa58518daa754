using KVLink.Core.Tokenization;

namespace KVLink.Core.Prompting;

/// <summary>Checks the ids a prompt format inserts directly (link tokens, memory markers, stop tokens) against a
/// tokenizer, so a format built for another vocabulary or another Llama 3 release fails at construction with the
/// id and what it collides with, instead of silently feeding the model header or end-of-turn tokens.</summary>
internal static class FormatTokenCheck
{
    private const string HowToFix =
        " Link tokens and memory markers must be unused reserved tokens. Set the ids explicitly: pass " +
        "new KvLinkLlama3Format(systemText, linkTokenStart, linkTokenIdCount, memStart, memEnd, stopTokenIds) as " +
        "KvLinkOptions.PromptFormat (for a Llama-3 vocabulary the published ids are KvLinkLlama3Format.Published; " +
        "see docs/prompt-format.md).";

    /// <param name="tokenizer">The tokenizer the format will be used with.</param>
    /// <param name="format">Named in messages.</param>
    /// <param name="inserted">Ids inserted as link tokens or markers, each with what it is used for.</param>
    /// <param name="stopTokenIds">Ids that end generation: they must exist, and they are functional by design.</param>
    /// <exception cref="ArgumentException">An id is missing from the vocabulary, is a functional special token, or is used twice.</exception>
    public static void Check(LlamaTokenizer tokenizer, string format, IEnumerable<(int Id, string Use)> inserted, IEnumerable<int> stopTokenIds)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        string prefix = $"Prompt format '{format}' does not fit this tokenizer (special tokens from {tokenizer.SpecialTokenSource}): ";
        var seen = new Dictionary<int, string>();
        foreach (var (id, use) in inserted)
        {
            if (!tokenizer.HasToken(id))
                throw new ArgumentException($"{prefix}{use} is id {id}, which is not a token of this vocabulary (size {tokenizer.VocabSize}).{HowToFix}", nameof(tokenizer));
            if (tokenizer.FunctionalTokens.TryGetValue(id, out string? job))
                throw new ArgumentException($"{prefix}{use} is id {id}, which is {job}.{HowToFix}", nameof(tokenizer));
            if (!seen.TryAdd(id, use))
                throw new ArgumentException($"{prefix}{use} is id {id}, which is also {seen[id]}.{HowToFix}", nameof(tokenizer));
        }
        foreach (int id in stopTokenIds)
        {
            if (!tokenizer.HasToken(id))
                throw new ArgumentException($"{prefix}stop token id {id} is not a token of this vocabulary (size {tokenizer.VocabSize}).{HowToFix}", nameof(tokenizer));
            if (seen.TryGetValue(id, out string? use))
                throw new ArgumentException($"{prefix}stop token id {id} is also {use}.{HowToFix}", nameof(tokenizer));
        }
    }
}
