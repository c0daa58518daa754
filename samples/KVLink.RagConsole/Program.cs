// RAG console: index a folder of .txt/.md files into a file-backed KV cache store (once; later runs reuse
// it), then answer questions interactively from the retrieved documents' caches with KVLink.
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.RagConsole;

if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.WriteLine("usage: KVLink.RagConsole <folder of .txt/.md files> [--model <HF checkpoint folder>] [--store <cache folder>] [--top <k>]");
    return 1;
}
string folder = Path.GetFullPath(args[0]);
string? Option(string name) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault();
string storeDir = Option("--store") ?? Path.Combine(folder, ".kvlink-cache");
int top = int.TryParse(Option("--top"), out int k) && k > 0 ? k : 3;
if (!Directory.Exists(folder)) { Console.Error.WriteLine($"Folder '{folder}' does not exist."); return 2; }

string? modelPath = Option("--model");
if (modelPath is null)
{
    // No model given: the demo model (KVLink.Demo copies it next to the app). It was trained only on a synthetic
    // world of fictional people and places, so on your own documents its answers are noise; timings are real.
    modelPath = KVLink.Demo.DemoModel.FindFolder() ?? throw new DirectoryNotFoundException("models/kvlink-demo was not found next to the app: pass --model <folder>.");
    Console.WriteLine("No --model given: using the demo model (trained on a synthetic world only; answers on your documents are noise, timings are real).");
}

var files = Directory.EnumerateFiles(folder, "*.*", SearchOption.AllDirectories)
    .Where(f => f.EndsWith(".txt", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".md", StringComparison.OrdinalIgnoreCase))
    .Where(f => !f.StartsWith(storeDir, StringComparison.Ordinal))
    .Order(StringComparer.Ordinal).ToList();
if (files.Count == 0) { Console.Error.WriteLine($"No .txt or .md files under '{folder}'."); return 2; }

var store = new FileKvCacheStore(Path.Combine(storeDir, "caches"));
await using var engine = await KvLinkEngine.LoadAsync(modelPath, new KvLinkOptions { LinkTokens = 5 }, store);
var documents = files.Select(f => new KvLinkDocument(File.ReadAllText(f), Path.GetRelativePath(folder, f))).ToList();

Console.WriteLine($"Indexing {documents.Count} files into {storeDir} ...");
var result = await engine.PrecomputeAllAsync(documents, new KvLinkIndexingOptions(), new ProgressBar(documents.Count));
Console.WriteLine();
Console.WriteLine($"Indexed {result.DocumentIds.Count} documents ({result.Tokens:N0} tokens, {result.TokensComputed:N0} computed now, the rest already cached) in {result.Elapsed.TotalSeconds:F1} s.");

var retriever = new KeywordRetriever();
for (int i = 0; i < documents.Count; i++) retriever.Add(result.DocumentIds[i], documents[i].Title!, documents[i].Text);

while (true)
{
    Console.Write("\nquestion> ");
    string? question = Console.ReadLine();
    if (question is null || question.Trim() is "" or "exit" or "quit") break;
    var hits = retriever.Top(question, top);
    if (hits.Count == 0) { Console.WriteLine("No document matches that question."); continue; }
    Console.WriteLine("documents: " + string.Join(", ", hits.Select(h => $"{h.Name} ({h.Score:F1})")));
    Console.Write("answer: ");
    await foreach (var update in engine.GenerateStreamingAsync(question, [.. hits.Select(h => h.Id)], new KvLinkGenerationOptions { MaxNewTokens = 48 }))
    {
        Console.Write(Printable(update.Delta));
        if (update.Result is { } r)
            Console.WriteLine($"\n  TTFT {r.Timings.TimeToFirstToken.TotalMilliseconds:F1} ms (cache load {r.Timings.CacheLoad.TotalMilliseconds:F1} ms, " +
                $"re-rotation {r.Timings.Rerotation.TotalMilliseconds:F2} ms, link pass {r.Timings.Prefill.TotalMilliseconds:F1} ms); " +
                $"{r.Usage.CachedTokens} tokens reused, {r.Usage.ComputedTokens} computed; total {r.Timings.Total.TotalMilliseconds:F0} ms");
    }
}
return 0;

static string Printable(string s) => new([.. s.Select(c => char.IsControl(c) && c != '\n' || c == '\uFFFD' ? '·' : c)]);

/// <summary>A one-line progress bar redrawn in place.</summary>
internal sealed class ProgressBar(int total) : IProgress<KvLinkIndexingProgress>
{
    private readonly Lock _lock = new();

    public void Report(KvLinkIndexingProgress p)
    {
        lock (_lock)
        {
            int width = 30, filled = total == 0 ? width : width * p.DocumentsDone / total;
            Console.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {p.DocumentsDone}/{total} documents, {p.Tokens:N0} tokens, {p.Elapsed.TotalSeconds:F1} s ");
        }
    }
}
