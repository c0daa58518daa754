using System.Collections.Concurrent;
using System.Diagnostics;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.TestSupport;
using Microsoft.Extensions.AI;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// --soak: issue 28's long soak. Distinct conversations of about 940-token prompts (three ~300-token documents and a
/// question), two turns each, 8 at a time, on one engine whose session budget (--session-mb) holds a small share of
/// them, persisted to a shared memory store, so eviction and store reads happen throughout. A small synthetic model
/// (float32, 4 layers of 256) keeps each request cheap; the failures this hunts (temporary TorchSharp scalars freed by
/// the finalizer, tensors freed by another owner) depend on concurrency and collections, not on the model's size.
/// Reports requests, exceptions (the first few in full) and wall time; the exit code is 1 when any exception escaped.
/// </summary>
internal static class Soak
{
    private static readonly KvLinkGenerationOptions Greedy = new() { MaxNewTokens = 8, StopTokenIds = [] };

    public static async Task RunAsync(BenchOptions options, Action<string> log)
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        set_num_threads(options.Threads);
        set_num_interop_threads(1);
        string folder = Path.Combine(Path.GetTempPath(), "kvlink-soak-" + Environment.ProcessId);
        try
        {
            SyntheticCheckpoint.Write(folder, SyntheticCheckpoint.SmallConfig(hidden: 256, layers: 4, heads: 8, kvHeads: 2, maxPositions: 2048), seed: 5);
            var tokenizer = LlamaTokenizer.FromCheckpointFolder(folder);
            using var model = LlamaCheckpoint.Load(folder, ScalarType.Float32);
            using var store = new MemoryKvCacheStore();
            using var engine = new KvLinkEngine(model, tokenizer, new KvLinkOptions
            {
                LinkTokens = 1, DType = ComputeDType.Float32, PromptFormat = KvLinkLlama3Format.FromTokenizer(tokenizer),
                SessionCacheBytes = (long)options.SessionMiB << 20, PersistSessions = options.SessionMiB > 0,
            }, store);
            string[] docs = [.. await Task.WhenAll(Enumerable.Range(1, 3).Select(i => engine.PrecomputeAsync(
                new KvLinkDocument(string.Join(' ', Enumerable.Range(0, 57).Select(w => $"w{(i * 31 + w * 7) % 97}")), $"Title {i}"))))];
            var probe = await engine.ChatAsync([new ChatMessage(ChatRole.User, "Which documents mention w1?")], docs, Greedy);
            log($"soak: {options.Conversations} conversations x 2 turns, prompts of {probe.Usage.PromptTokens} tokens, session budget {options.SessionMiB} MiB, {options.Threads} threads; load {Machine.LoadAverage()}");

            var errors = new ConcurrentQueue<string>();
            long requests = 0;
            var clock = Stopwatch.StartNew();
            await Parallel.ForEachAsync(Enumerable.Range(1, options.Conversations), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (c, _) =>
            {
                List<ChatMessage> messages = [new(ChatRole.User, $"Conversation {c}: which documents mention w{c % 97}?")];
                try
                {
                    var first = await engine.ChatAsync(messages, docs, Greedy);
                    Interlocked.Increment(ref requests);
                    messages.Add(new ChatMessage(ChatRole.Assistant, first.Text));
                    messages.Add(new ChatMessage(ChatRole.User, $"And w{(c * 7) % 97} in conversation {c}?"));
                    await engine.ChatAsync(messages, docs, Greedy);
                    Interlocked.Increment(ref requests);
                }
                catch (Exception e) { errors.Enqueue($"conversation {c}: {e}"); }
                if (c % 1000 == 0) log($"{c} conversations started, {Interlocked.Read(ref requests)} requests done, {errors.Count} exceptions, {clock.Elapsed.TotalSeconds:0} s");
            });
            await engine.SessionWrites;
            foreach (string e in errors.Take(3)) log(e);
            log($"soak: {Interlocked.Read(ref requests)} requests answered, {errors.Count} exceptions, wall {clock.Elapsed.TotalSeconds:0.0} s "
                + $"({clock.Elapsed.TotalMilliseconds / Math.Max(1, 2 * options.Conversations):0.0} ms per request); sessions kept {engine.Sessions.Count}, store {store.Count} entries; load {Machine.LoadAverage()}");
            if (!errors.IsEmpty) Environment.ExitCode = 1;
        }
        finally
        {
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { }
        }
    }
}
