using KVLink.Core.Prompting;

namespace KVLink.Core.Engine;

/// <summary>
/// A request's tokens, each distinct text tokenized once: the prefix (with the conversation's system content), every
/// document in the slot whose tokens it uses, and the suffix (turns, question, generation header). The length check, the
/// cache lookup, the encode of a document not cached yet and the prompt's layout all read them from here.
/// </summary>
internal sealed record RequestTokens(IReadOnlyList<int> Prefix, IReadOnlyList<DocumentTokens> Documents, IReadOnlyList<int> Suffix)
{
    /// <summary>
    /// Tokenizes <paramref name="conversation"/> and <paramref name="documents"/>; document j uses the tokens of slot
    /// <paramref name="tokenSlot"/>(j) (its stored entry's slot in KVLink mode, its own in full prefill).
    /// </summary>
    public static RequestTokens Of(EngineContext c, DocumentCatalog catalog, ConversationPrompt conversation, IReadOnlyList<KvLinkDocument> documents, Func<int, int> tokenSlot)
    {
        var prefix = c.Format.PrefixOf(c.Tokenizer, conversation);
        var docs = new DocumentTokens[documents.Count];
        for (int j = 0; j < docs.Length; j++)
        {
            int slot = tokenSlot(j);
            var full = c.Format.Document(c.Tokenizer, documents[j], slot);
            double fraction = catalog.KeepFraction(documents[j]);
            docs[j] = new DocumentTokens(slot, full, fraction, fraction < 1 ? c.Format.DocumentHeaderLength(c.Tokenizer, documents[j], slot, full) : 0);
        }
        return new RequestTokens(prefix, docs, c.Format.SuffixOf(c.Tokenizer, conversation));
    }

    /// <summary>The prompt: these tokens around <paramref name="documents"/>' tokens (as placed: from their entries, or
    /// compressed), with <paramref name="linkTokens"/> link tokens after each document.</summary>
    public PromptLayout Layout(PromptFormat format, IReadOnlyList<IReadOnlyList<int>> documents, int linkTokens) =>
        format.Build(Prefix, documents, Suffix, linkTokens);

    /// <summary>The fewest tokens the prompt can have: every compressed document at its smallest.</summary>
    public long MinimumLength(int linkTokens) =>
        Prefix.Count + Suffix.Count + (long)linkTokens * Documents.Count + Documents.Sum(d => (long)d.MinimumLength);
}

/// <summary>
/// A document's tokens in one slot, uncompressed (<paramref name="Full"/>), with the length of its header when it is
/// compressed (<paramref name="KeepFraction"/> below 1: the header is kept whole, the body reduced).
/// </summary>
internal sealed record DocumentTokens(int Slot, IReadOnlyList<int> Full, double KeepFraction, int HeaderLength)
{
    /// <summary>True when the document is cached compressed.</summary>
    public bool Compressed => KeepFraction < 1;

    /// <summary>Its tokens in the prompt at the least: all of them, or the header and the kept share of the body.</summary>
    public int MinimumLength => Compressed ? HeaderLength + (int)Math.Ceiling(KeepFraction * (Full.Count - HeaderLength)) : Full.Count;
}
