using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Prompting;

namespace KVLink.RagConsole;

/// <summary>The console itself: index the folder (reusing stored caches), then answer questions until an empty line.</summary>
internal static class RagSession
{
    public static async Task<int> RunAsync(string folder, string? modelPath, string? storeDir, int top, TextWriter output, TextWriter error, CancellationToken ct)
    {
        storeDir ??= Path.Combine(folder, ".kvlink-cache");
        if (modelPath is null)
        {
            // No model given: the demo model (KVLink.Demo copies it next to the app). It was trained only on a synthetic
            // world of fictional people and places, so on your own documents its answers are noise; timings are real.
            modelPath = KVLink.Demo.DemoModel.FindFolder();
            if (modelPath is null)
            {
                await error.WriteLineAsync("models/kvlink-demo was not found next to the app: pass --model <folder>.");
                return 1;
            }
            await output.WriteLineAsync("No --model given: using the demo model (trained on a synthetic world only; answers on your documents are noise, timings are real).");
        }

        string fullStore = Path.GetFullPath(storeDir);
        var files = Directory.EnumerateFiles(folder, "*.*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
            .Where(f => !f.StartsWith(fullStore, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0)
        {
            await error.WriteLineAsync($"No .txt or .md files under '{folder}'.");
            return 1;
        }

        var store = new FileKvCacheStore(Path.Combine(fullStore, "caches"));
        await using var engine = await KvLinkEngine.LoadAsync(modelPath, new KvLinkOptions { LinkTokens = 5 }, store, cancellationToken: ct);
        var documents = files.Select(f => new KvLinkDocument(File.ReadAllText(f), Path.GetRelativePath(folder, f))).ToList();

        await output.WriteLineAsync($"Indexing {documents.Count} files into {fullStore} ...");
        var result = await engine.PrecomputeAllAsync(documents, new KvLinkIndexingOptions(), new ProgressBar(documents.Count, output), ct);
        await output.WriteLineAsync();
        await output.WriteLineAsync($"Indexed {result.DocumentIds.Count} documents ({result.Tokens:N0} tokens, {result.TokensComputed:N0} computed now, the rest already cached) in {result.Elapsed.TotalSeconds:F1} s.");

        var retriever = new KeywordRetriever();
        for (int i = 0; i < documents.Count; i++) retriever.Add(result.DocumentIds[i], documents[i].Title!, documents[i].Text);

        while (true)
        {
            await output.WriteAsync("\nquestion> ");
            string? question = Console.ReadLine();
            if (question is null || question.Trim() is "" or "exit" or "quit") break;
            var hits = retriever.Top(question, top);
            if (hits.Count == 0) { await output.WriteLineAsync("No document matches that question."); continue; }
            await output.WriteLineAsync("documents: " + string.Join(", ", hits.Select(h => $"{h.Name} ({h.Score:F1})")));
            await output.WriteAsync("answer: ");
            await foreach (var update in engine.GenerateStreamingAsync(question, [.. hits.Select(h => h.Id)], new KvLinkGenerationOptions { MaxNewTokens = 48 }, ct))
            {
                await output.WriteAsync(Printable(update.Delta));
                if (update.Result is { } r)
                    await output.WriteLineAsync($"\n  TTFT {r.Timings.TimeToFirstToken.TotalMilliseconds:F1} ms (cache load {r.Timings.CacheLoad.TotalMilliseconds:F1} ms, " +
                        $"re-rotation {r.Timings.Rerotation.TotalMilliseconds:F2} ms, link pass {r.Timings.Prefill.TotalMilliseconds:F1} ms); " +
                        $"{r.Usage.CachedTokens} tokens reused, {r.Usage.ComputedTokens} computed; total {r.Timings.Total.TotalMilliseconds:F0} ms");
            }
        }
        return 0;
    }

    private static string Printable(string s) => new([.. s.Select(c => char.IsControl(c) && c != '\n' || c == '\uFFFD' ? '·' : c)]);
}
