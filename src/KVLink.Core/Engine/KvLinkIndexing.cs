using KVLink.Core.Prompting;

namespace KVLink.Core.Engine;

/// <summary>Progress of a bulk precompute (<see cref="KvLinkEngine.PrecomputeAllAsync(IAsyncEnumerable{KvLinkDocument}, KvLinkIndexingOptions?, IProgress{KvLinkIndexingProgress}?, CancellationToken)"/>).</summary>
/// <param name="DocumentsDone">Documents whose caches are stored (computed now or found already stored).</param>
/// <param name="DocumentsTotal">Documents in the corpus when known up front (a collection), else null.</param>
/// <param name="Tokens">Document tokens of the finished documents (slot 0).</param>
/// <param name="TokensComputed">Of those, tokens encoded by this run (the rest were already stored).</param>
/// <param name="Elapsed">Time since the run started.</param>
public sealed record KvLinkIndexingProgress(int DocumentsDone, int? DocumentsTotal, long Tokens, long TokensComputed, TimeSpan Elapsed);

/// <summary>The outcome of a bulk precompute.</summary>
/// <param name="DocumentIds">The id of every document, in input order.</param>
/// <param name="Tokens">Document tokens of all documents (slot 0).</param>
/// <param name="TokensComputed">Tokens encoded by this run (0 when everything was already stored).</param>
/// <param name="Elapsed">Duration of the run.</param>
public sealed record KvLinkIndexingResult(IReadOnlyList<string> DocumentIds, long Tokens, long TokensComputed, TimeSpan Elapsed);

/// <summary>Settings of a bulk precompute.</summary>
public sealed class KvLinkIndexingOptions
{
    /// <summary>
    /// Documents in flight at once (default 8). The engine's scheduler encodes the documents in flight together, in one
    /// forward per step (up to <c>KvLinkOptions.MaxStepTokens</c> tokens), which keeps the matrix products full; more in
    /// flight also overlaps tokenization and store writes with encoding. Must be at least 1.
    /// </summary>
    public int MaxDegreeOfParallelism { get; set; } = 8;
}
