using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using KVLink.Core.Caching;
using KVLink.Core.Compression;
using KVLink.Demo;
using KVLink.Core.Engine;
using KVLink.Training.Evaluation;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using KVLink.Training;
using static TorchSharp.torch;

namespace KVLink.Train;

/// <summary>
/// <c>compression</c>: accuracy, cache bytes and TTFT of the KVLink-trained demo model (KVLink5) with documents compressed
/// before caching, at kept fractions 1, 0.75, 0.5, 0.25: self-information scoring (the engine's own model) against a
/// random-drop baseline, and with int8 storage; plus how often names survive compared with template words.
/// Writes docs/compression.md between markers.
/// </summary>
internal static class CompressionCommand
{
    private const string Begin = "<!-- compression-table:begin -->", End = "<!-- compression-table:end -->";

    private sealed record Config(double Keep, string Scorer, bool Int8);

    public static async Task RunAsync(Options o)
    {
        string folder = o.Get("model") ?? DemoModel.FindFolder() ?? throw new DirectoryNotFoundException("models/kvlink-demo not found");
        int perKind = o.Int("per-kind", 250), links = o.Int("links", 5);
        var questions = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { Seed = new DemoRecipe().Seed, TrainQuestionsPerKind = 0, EvalQuestionsPerKind = perKind }).Eval;
        var configs = new List<Config> { new(1, "none", false), new(1, "none", true) };
        foreach (double keep in new[] { 0.75, 0.5, 0.25 })
        {
            configs.Add(new(keep, "self-information", false));
            configs.Add(new(keep, "self-information", true));
            configs.Add(new(keep, "random drop", false));
        }
        var clock = Stopwatch.StartNew();
        var table = new StringBuilder();
        table.AppendLine("| kept fraction | scorer | storage | single-hop | two-hop | overall | cache bytes / original token | KVLink5 TTFT (mean) |");
        table.AppendLine("|---:|---|---|---:|---:|---:|---:|---:|");
        foreach (var c in configs)
        {
            string line = await MeasureAsync(folder, c, questions, links);
            DemoRecipe.Log(line);
            table.AppendLine(line);
        }
        string survival = Survival(folder, questions);
        DemoRecipe.Log(survival);
        string report = $"""
            {table}
            {survival}

            Measured {DateTime.UtcNow:yyyy-MM-dd} in one run of {clock.Elapsed:m\:ss} min on {Environment.ProcessorCount} CPU cores ({RuntimeInformation.OSDescription.Trim()}), `{Path.GetFileName(folder)}` in Float32, KVLink with K = {links}, greedy, {perKind} held-out questions of each kind. Cache bytes are the serialized entries (`KvCacheFormat`, header included) of every document of every question, divided by the documents' uncompressed token count; "int8" stores K/V as `Int8PerChannel` in a file store, so its accuracy includes the quantisation.
            """;
        DemoRecipe.WriteMarkedSection("compression.md", "Compression", Begin, End, report);
        Console.WriteLine(report);
    }

    private static async Task<string> MeasureAsync(string folder, Config c, IReadOnlyList<SyntheticRagQuestion> questions, int links)
    {
        string? temp = c.Int8 ? Path.Combine(Path.GetTempPath(), "kvlink-compression-" + Guid.NewGuid().ToString("N")[..8]) : null;
        IKvCacheStore store = temp is null ? new MemoryKvCacheStore() : new FileKvCacheStore(temp, new FileKvCacheStoreOptions { Quantization = KvCacheQuantization.Int8PerChannel });
        var options = new KvLinkOptions
        {
            DType = ComputeDType.Float32, LinkTokens = links,
            Compression = new DocumentCompressionOptions { KeepFraction = c.Keep, Scorer = c.Scorer == "random drop" ? new RandomTokenScorer(7) : null },
        };
        await using var engine = await KvLinkEngine.LoadAsync(folder, options, store);
        var tokenizer = engine.Tokenizer;
        int[] correct = new int[2], total = new int[2];
        long bytes = 0, originalTokens = 0;
        double ttft = 0;
        var generation = new KvLinkGenerationOptions { Mode = ContextMode.KvLink, LinkTokens = links, MaxNewTokens = 24 };
        foreach (var q in questions)
        {
            var ids = new List<string>();
            foreach (var d in q.Sample.Documents) ids.Add(await engine.PrecomputeAsync(d));
            // A one-token request first stores the caches of the slots beyond 0 (encoded on demand), so the TTFT below is the query's alone.
            await engine.GenerateAsync(q.Sample.Question, ids, generation with { MaxNewTokens = 1 });
            var result = await engine.GenerateAsync(q.Sample.Question, ids, generation);
            int kind = (int)q.Kind;
            total[kind]++;
            if (AnswerMetric.IsCorrect(result.Text, [q.Gold])) correct[kind]++;
            ttft += result.Timings.TimeToFirstToken.TotalMilliseconds;
            for (int slot = 0; slot < ids.Count; slot++)
            {
                originalTokens += engine.PromptFormat.Document(tokenizer, q.Sample.Documents[slot], slot).Count;
                using var entry = await engine.Store.GetAsync(engine.CacheKey(ids[slot], slot));
                bytes += KvCacheFormat.Serialize(entry!, c.Int8 ? KvCacheQuantization.Int8PerChannel : KvCacheQuantization.None).Length;
            }
            foreach (var id in ids) await engine.RemoveDocumentAsync(id);
        }
        if (temp is not null) Directory.Delete(temp, recursive: true);
        static string P(int a, int n) => (100.0 * a / Math.Max(1, n)).ToString("F1", CultureInfo.InvariantCulture);
        return $"| {c.Keep.ToString(CultureInfo.InvariantCulture)} | {c.Scorer} | {(c.Int8 ? "int8" : "float32")} | {P(correct[0], total[0])} | {P(correct[1], total[1])} | " +
               $"{P(correct[0] + correct[1], total[0] + total[1])} | {(double)bytes / originalTokens:F0} | {ttft / questions.Count:F2} ms |";
    }

    /// <summary>How often name tokens and template words survive self-information compression at each fraction.</summary>
    private static string Survival(string folder, IReadOnlyList<SyntheticRagQuestion> questions)
    {
        var tokenizer = LlamaTokenizer.FromCheckpointFolder(folder);
        var format = PromptSettingsFile.FormatFor(folder, tokenizer);
        using var model = LlamaCheckpoint.Load(folder, ScalarType.Float32);
        var compressor = new DocumentCompressor(new SelfInformation(model));
        var names = SyntheticRagCorpus.Lexicon.All.Select(n => tokenizer.Encode(" " + n)[0]).ToHashSet();
        var sb = new StringBuilder("Share of tokens kept by self-information compression (document bodies, headers excluded): ");
        var parts = new List<string>();
        using var _ = no_grad();
        foreach (double keep in new[] { 0.75, 0.5, 0.25 })
        {
            long namesSeen = 0, namesKept = 0, otherSeen = 0, otherKept = 0;
            foreach (var d in questions.Take(100).SelectMany(q => q.Sample.Documents))
            {
                var tokens = format.Document(tokenizer, d, 0);
                int header = format.DocumentHeaderLength(tokenizer, d, 0);
                var kept = compressor.Select(tokens, keep, header, [tokens.Count - 1]).ToHashSet();
                for (int i = header; i < tokens.Count - 1; i++)
                {
                    bool isName = names.Contains(tokens[i]);
                    if (isName) { namesSeen++; if (kept.Contains(i)) namesKept++; }
                    else { otherSeen++; if (kept.Contains(i)) otherKept++; }
                }
            }
            parts.Add($"at {keep.ToString(CultureInfo.InvariantCulture)}, names {100.0 * namesKept / namesSeen:F0} % vs other words {100.0 * otherKept / otherSeen:F0} %");
        }
        return sb.Append(string.Join("; ", parts)).Append('.').ToString();
    }
}
