using System.Diagnostics;
using System.Runtime.CompilerServices;
using KVLink.Core.Diagnostics;
using KVLink.Core.Prompting;
using Microsoft.Extensions.Logging;

namespace KVLink.Core.Engine;

/// <summary>Precomputes a corpus with bounded parallelism; <see cref="KvLinkEngine.PrecomputeAllAsync(IEnumerable{KvLinkDocument}, KvLinkIndexingOptions?, IProgress{KvLinkIndexingProgress}?, CancellationToken)"/>.</summary>
internal sealed class CorpusIndexer(EngineContext c, DocumentKvSource documents)
{
    /// <summary>
    /// Precomputes a whole corpus with bounded parallelism, reporting progress after every document.
    /// Already-stored documents are found, not recomputed, so a cancelled run can simply be started again.
    /// </summary>
    /// <remarks>
    /// Cancellation stops taking new documents; a document already being encoded is finished and stored
    /// whole, and the method returns (throwing <see cref="OperationCanceledException"/>) only when nothing of
    /// this run is still being written. Every store entry is therefore either complete or absent.
    /// </remarks>
    /// <exception cref="OperationCanceledException">Cancelled; documents finished so far stay stored.</exception>
    /// <exception cref="ArgumentException">A document is invalid (empty text, too long); documents finished so far stay stored.</exception>
    public Task<KvLinkIndexingResult> PrecomputeAllAsync(IEnumerable<KvLinkDocument> corpus, KvLinkIndexingOptions? options = null,
        IProgress<KvLinkIndexingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        int? total = corpus.TryGetNonEnumeratedCount(out int n) ? n : null;
        return PrecomputeAllCoreAsync(ToAsync(corpus), total, options, progress, cancellationToken);
    }

    /// <summary>Like <see cref="PrecomputeAllAsync(IEnumerable{KvLinkDocument}, KvLinkIndexingOptions?, IProgress{KvLinkIndexingProgress}?, CancellationToken)"/>, for a streamed corpus (total unknown).</summary>
    public Task<KvLinkIndexingResult> PrecomputeAllAsync(IAsyncEnumerable<KvLinkDocument> corpus, KvLinkIndexingOptions? options = null,
        IProgress<KvLinkIndexingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        return PrecomputeAllCoreAsync(corpus, null, options, progress, cancellationToken);
    }

    private async Task<KvLinkIndexingResult> PrecomputeAllCoreAsync(IAsyncEnumerable<KvLinkDocument> corpus, int? total, KvLinkIndexingOptions? options,
        IProgress<KvLinkIndexingProgress>? progress, CancellationToken cancellationToken)
    {
        options ??= new KvLinkIndexingOptions();
        if (options.MaxDegreeOfParallelism < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxDegreeOfParallelism, "KvLinkIndexingOptions.MaxDegreeOfParallelism must be >= 1.");

        using var activity = KvLinkTelemetry.ActivitySource.StartActivity("kvlink.index", ActivityKind.Internal);
        activity?.SetTag(KvLinkTelemetry.EngineTag, c.Telemetry.Name);
        var clock = Stopwatch.StartNew();
        var ids = new List<string?>();
        var gate = new Lock();
        int done = 0;
        long tokens = 0, computed = 0;

        var parallel = new ParallelOptions { MaxDegreeOfParallelism = options.MaxDegreeOfParallelism, CancellationToken = cancellationToken };
        try
        {
            await Parallel.ForEachAsync(Numbered(corpus, ids, gate, cancellationToken), parallel, async (item, _) =>
            {
                // Not bound to the caller's token: a started document is finished and stored whole.
                var (id, docTokens, docComputed) = await documents.PrecomputeAsync(item.Document, CancellationToken.None).ConfigureAwait(false);
                KvLinkIndexingProgress report;
                lock (gate)
                {
                    ids[item.Index] = id;
                    done++;
                    tokens += docTokens;
                    computed += docComputed;
                    report = new KvLinkIndexingProgress(done, total, tokens, computed, clock.Elapsed);
                }
                progress?.Report(report);
            }).ConfigureAwait(false);
        }
        catch (OperationCanceledException e)
        {
            EngineTelemetry.Fail(activity, e);
            KvLinkLog.IndexingCancelled(c.Telemetry.Logger, c.Telemetry.Name, Volatile.Read(ref done));
            throw;
        }
        catch (Exception e) when (EngineTelemetry.Fail(activity, e)) { throw; }

        activity?.SetTag("kvlink.documents", done);
        activity?.SetTag("kvlink.tokens", tokens);
        activity?.SetTag("kvlink.tokens.computed", computed);
        if (c.Telemetry.Logger.IsEnabled(LogLevel.Information))
            KvLinkLog.IndexingDone(c.Telemetry.Logger, c.Telemetry.Name, done, tokens, computed, clock.Elapsed.TotalMilliseconds);
        return new KvLinkIndexingResult([.. ids.Select(i => i!)], tokens, computed, clock.Elapsed);
    }

    private static async IAsyncEnumerable<(int Index, KvLinkDocument Document)> Numbered(IAsyncEnumerable<KvLinkDocument> corpus, List<string?> ids, Lock gate,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        int i = 0;
        await foreach (var d in corpus.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            ArgumentNullException.ThrowIfNull(d, "documents[" + i + "]");
            lock (gate) ids.Add(null);
            yield return (i++, d);
        }
    }

#pragma warning disable CS1998 // An iterator over a synchronous sequence.
    private static async IAsyncEnumerable<KvLinkDocument> ToAsync(IEnumerable<KvLinkDocument> corpus)
#pragma warning restore CS1998
    {
        foreach (var d in corpus) yield return d;
    }
}
