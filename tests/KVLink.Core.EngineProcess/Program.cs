using System.Globalization;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Redis;
using KVLink.Core.Tokenization;
using StackExchange.Redis;
using static TorchSharp.torch;

// Usage: EngineProcess <checkpoint-folder> <redis-configuration> <key-prefix> <tenant>
// Prints "READY", then answers one line per command line on stdin:
//   precompute <n> <words>   -> "ok <document-id> <slot-0 key hash>"   (the document is words w.. derived from n)
//   generate <document-id>    -> "ok <cached-tokens> <comma-separated token ids>"
//   contains <document-id>    -> "ok true|false"                        (slot 0 in the store)
//   remove <document-id>      -> "ok <entries removed>"
//   stats                     -> "ok writes=.. failed=.. hits=.. misses=.. unavailable=.."
// Any failure of a command answers "error <type>: <message>". Ends on "quit", end of input, or after ten minutes.
if (args.Length != 4) { Console.Error.WriteLine("usage: EngineProcess <checkpoint-folder> <redis-configuration> <key-prefix> <tenant>"); return 2; }
_ = Task.Delay(TimeSpan.FromMinutes(10)).ContinueWith(_ => Environment.Exit(4), TaskScheduler.Default);

var tokenizer = LlamaTokenizer.FromCheckpointFolder(args[0]);
using var model = LlamaCheckpoint.Load(args[0], ScalarType.Float32);
using var connection = await ConnectionMultiplexer.ConnectAsync(args[1]);
var store = new RedisKvCacheStore(connection, new RedisKvCacheStoreOptions { KeyPrefix = args[2], ChunkBytes = 4096 });
var format = KvLinkLlama3Format.FromTokenizer(tokenizer, "Answer from the documents.");
await using var engine = new KvLinkEngine(model, tokenizer, new KvLinkOptions { LinkTokens = 1, PromptFormat = format, DType = ComputeDType.Float32, Tenant = args[3] }, store);
var greedy = new KvLinkGenerationOptions { MaxNewTokens = 6, StopTokenIds = [] };

Console.Out.WriteLine("READY");
Console.Out.Flush();
while (await Console.In.ReadLineAsync() is { } line)
{
    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    if (parts.Length == 0) continue;
    if (parts[0] == "quit") break;
    string reply;
    try
    {
        reply = parts[0] switch
        {
            "precompute" => await Precompute(int.Parse(parts[1], CultureInfo.InvariantCulture), int.Parse(parts[2], CultureInfo.InvariantCulture)),
            "generate" => await Generate(parts[1]),
            "contains" => "ok " + (await store.ContainsAsync(engine.CacheKey(parts[1], 0)) ? "true" : "false"),
            "remove" => "ok " + (await engine.RemoveDocumentAsync(parts[1])).ToString(CultureInfo.InvariantCulture),
            "stats" => $"ok writes={store.Statistics.Writes} failed={store.Statistics.FailedWrites} hits={store.Statistics.Hits} misses={store.Statistics.Misses} unavailable={store.Statistics.Unavailable}",
            _ => "error unknown command " + parts[0],
        };
    }
    catch (Exception e)
    {
        reply = $"error {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}";
    }
    Console.Out.WriteLine(reply);
    Console.Out.Flush();
}
return 0;

async Task<string> Precompute(int n, int words)
{
    var doc = new KvLinkDocument(string.Join(' ', Enumerable.Range(0, words).Select(w => $"w{(n * 31 + w * 7) % 97}")), $"Title {n}");
    string id = await engine.PrecomputeAsync(doc);
    return $"ok {id} {engine.CacheKey(id, 0).Hash}";
}

async Task<string> Generate(string id)
{
    var result = await engine.GenerateAsync("Which word?", [id], greedy);
    return $"ok {result.Usage.CachedTokens} {string.Join(',', result.TokenIds)}";
}
