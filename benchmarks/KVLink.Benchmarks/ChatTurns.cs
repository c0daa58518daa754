using System.Diagnostics;
using System.Globalization;
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
/// --chat-turns: a 5-turn conversation over 10 documents on the Llama-3.2-1B shape (random weights, float32): TTFT of
/// each turn with the kept conversation cache and, in the same run, recomputing the whole conversation (an engine with
/// <c>SessionCacheBytes = 0</c>, same model and store); cached tokens per turn; generated tokens compared turn by turn.
/// </summary>
internal static class ChatTurns
{
    // Words drawn with a fixed seed until the text has about `tokens` tokens.
    private static string Text(LlamaTokenizer tokenizer, int tokens, int seed)
    {
        string[] words = ["river", "engine", "cache", "north", "seven", "linked", "document", "answer", "city", "model", "token", "stone", "market", "1984", "blue"];
        var random = new Random(seed);
        var text = new System.Text.StringBuilder();
        while (tokenizer.EncodeText(text.ToString()).Count < tokens) text.Append(words[random.Next(words.Length)]).Append(' ');
        return text.ToString().TrimEnd() + ".";
    }

    public static async Task RunAsync(int threads, int conversations, Action<string> log)
    {
        KVLink.Core.Native.TorchSharpLoader.EnsureLoaded();
        set_num_threads(threads);
        set_num_interop_threads(1);
        string temp = Path.Combine(Path.GetTempPath(), "kvlink-chat-turns-" + Environment.ProcessId);
        Directory.CreateDirectory(temp);
        string tokenizerPath = Path.Combine(temp, "tokenizer.json");
        SyntheticCheckpoint.WriteTokenizer(tokenizerPath);
        var tokenizer = LlamaTokenizer.FromHuggingFaceJson(tokenizerPath);
        var config = BenchModel.Llama32OneB();
        var clock = Stopwatch.StartNew();
        using var model = new LlamaForCausalLM(config, ScalarType.Float32);
        SyntheticCheckpoint.Randomize(model, seed: 7);
        log($"1B-shape model (float32, random weights) built in {clock.Elapsed.TotalSeconds:0.0} s; load average {Machine.LoadAverage()}");

        var store = new MemoryKvCacheStore();
        var format = KvLinkLlama3Format.FromTokenizer(tokenizer);
        KvLinkOptions Options(long sessionBytes) => new() { LinkTokens = 5, DType = ComputeDType.Float32, PromptFormat = format, SessionCacheBytes = sessionBytes, PrecomputeSlots = 10 };
        using var reuse = new KvLinkEngine(model, tokenizer, Options(1L << 30), store);
        using var recompute = new KvLinkEngine(model, tokenizer, Options(0), store);

        // Ten documents of about 150 tokens each (the paper's setup: 10 retrieved passages).
        var docs = Enumerable.Range(0, 10).Select(i => new KvLinkDocument(Text(tokenizer, 150, seed: 100 + i), $"Doc {i}")).ToList();
        clock.Restart();
        var ids = new List<string>();
        foreach (var d in docs) ids.Add(await reuse.PrecomputeAsync(d));
        log($"10 documents precomputed for 10 slots in {clock.Elapsed.TotalSeconds:0.0} s");

        const int turns = 5;
        string[] questions = ["What does the first document say?", "And the second one?", "Which of them mentions a number?", "Summarise both.", "Anything else?"];
        var options = new KvLinkGenerationOptions { MaxNewTokens = 8 };
        var ttft = new[] { new List<double>[turns], new List<double>[turns] };
        var cached = new int[2, turns];
        var prompt = new int[turns];
        int identical = 0, compared = 0;
        for (int e = 0; e < 2; e++) for (int t = 0; t < turns; t++) ttft[e][t] = [];
        // Conversation 0 warms up (first-use costs: prefix cache, allocator); the rest are measured.
        for (int c = 0; c <= conversations; c++)
        {
            var history = new[] { new List<ChatMessage>(), new List<ChatMessage>() };
            for (int t = 0; t < turns; t++)
            {
                var results = new GenerationResult[2];
                for (int e = 0; e < 2; e++)
                {
                    history[e].Add(new ChatMessage(ChatRole.User, $"{questions[t]} (conversation {c})"));
                    results[e] = await (e == 0 ? reuse : recompute).ChatAsync(history[e], ids, options);
                    history[e].Add(new ChatMessage(ChatRole.Assistant, results[e].Text));
                    if (c > 0) ttft[e][t].Add(results[e].Timings.TimeToFirstToken.TotalMilliseconds);
                    cached[e, t] = results[e].Usage.CachedTokens;
                }
                prompt[t] = results[0].Usage.PromptTokens;
                compared++;
                if (results[0].TokenIds.SequenceEqual(results[1].TokenIds)) identical++;
                log($"conversation {c} turn {t + 1}: prompt {prompt[t]}, cached {cached[0, t]} (reuse) / {cached[1, t]} (recompute), " +
                    $"TTFT {results[0].Timings.TimeToFirstToken.TotalMilliseconds:0} / {results[1].Timings.TimeToFirstToken.TotalMilliseconds:0} ms, tokens {(results[0].TokenIds.SequenceEqual(results[1].TokenIds) ? "identical" : "DIFFER")}");
            }
        }
        static double Median(List<double> xs) { var s = xs.Order().ToList(); return s[s.Count / 2]; }
        string F(double x) => x.ToString("0", CultureInfo.InvariantCulture);
        Console.WriteLine();
        Console.WriteLine("| turn | prompt tokens | cached (session reuse) | cached (recompute) | TTFT median, session reuse (ms) | TTFT median, recompute (ms) |");
        Console.WriteLine("|---|---|---|---|---|---|");
        for (int t = 0; t < turns; t++)
            Console.WriteLine($"| {t + 1} | {prompt[t]} | {cached[0, t]} | {cached[1, t]} | {F(Median(ttft[0][t]))} | {F(Median(ttft[1][t]))} |");
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"TTFT turn 5 / turn 1 (medians of {conversations} conversations): {Median(ttft[0][4]) / Median(ttft[0][0]):0.00}x with session reuse, " +
            $"{Median(ttft[1][4]) / Median(ttft[1][0]):0.00}x recomputing; turn 5 with reuse vs recompute: {Median(ttft[0][4]) / Median(ttft[1][4]):0.00}x. " +
            $"Generated tokens identical in {identical} of {compared} turns (warm-up included)."));
        Console.WriteLine($"Machine: {Machine.Describe()}; load average after: {Machine.LoadAverage()}");
        try { Directory.Delete(temp, true); } catch (IOException) { }
    }
}
