namespace KVLink.Core.Engine;

/// <summary>
/// How document caches are used across slots when the prompt format writes the slot number into each document
/// (the published <c>Document [n](Title: …)</c> header, so a document's tokens differ per slot). Formats with a
/// slot-free header (<c>KvLinkLlama3Format.SlotFreeHeader</c>) have one exact cache per document whatever the policy.
/// </summary>
public enum SlotPolicy
{
    /// <summary>
    /// One cache per document at slot 0, served in every slot: precompute once, and a query over precomputed documents
    /// computes only its segment-0 tokens wherever they land. In slots other than the first the header reads
    /// <c>Document [1]</c> instead of the slot's number; docs/accuracy.md measures what that costs.
    /// </summary>
    Shared,

    /// <summary>
    /// A cache per document and slot, each with the slot's own header (the published prompt, token for token): a document
    /// in a slot it was not precomputed for is encoded when first used there, and each slot's cache is stored.
    /// </summary>
    Exact,
}
