using KVLink.Core.Engine;
using KVLink.Core.Prompting;

namespace KVLink.TestSupport;

/// <summary>
/// What the tests and benchmarks observe inside an engine (the model thread, the scheduler's queue, kept sessions, the
/// prompt a request would build), read through its one internal seam, <c>KvLinkEngine.Parts</c>, so that the engine
/// itself carries no member that exists only for tests.
/// </summary>
internal static class EngineProbes
{
    extension(KvLinkEngine engine)
    {
        /// <summary>The engine's shared context: model thread, scheduler, store, options.</summary>
        public EngineContext Context => engine.Parts.Context;

        /// <summary>Runs <paramref name="work"/> on the model thread between two scheduler steps (hold the thread while requests queue).</summary>
        public Task<T> OnModelThread<T>(Func<T> work) => engine.Parts.Context.Worker.Run(work, CancellationToken.None);

        /// <summary>The continuous-batching scheduler of the model thread.</summary>
        public BatchScheduler Scheduler => engine.Parts.Context.Worker.Scheduler;

        /// <summary>Work items the model worker has started (proof that a request cancelled while queued never ran).</summary>
        public long WorkStarted => engine.Parts.Context.Worker.Started;

        /// <summary>The kept conversation caches (touched by requests only on the model thread).</summary>
        public SessionLru Sessions => engine.Parts.Requests.Sessions.InMemory;

        /// <summary>Completes when the session writes started so far (PersistSessions) have ended.</summary>
        public Task SessionWrites => engine.Parts.Requests.Sessions.SessionWrites;

        /// <summary>Documents in the engine's catalog now.</summary>
        public int CatalogCount => engine.Parts.Catalog.Count;

        /// <summary>The prompt a request in <paramref name="mode"/> (default: the engine's) would use (documents resolved, caches not loaded).</summary>
        public Task<PromptLayout> BuildLayoutAsync(string query, IReadOnlyList<string> documentIds, int linkTokens, ContextMode? mode = null,
            CancellationToken cancellationToken = default) =>
            engine.Parts.Requests.LayoutAsync(query, documentIds, linkTokens, mode ?? engine.Options.Mode, cancellationToken);
    }
}
