// KVLink.Core quickstart: precompute a few documents once, then answer questions from their stored
// KV caches (KVLink) and, for comparison, by encoding the same prompt whole (full prefill), printing
// both answers and their time to first token side by side.
using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Prompting;

string? modelPath = args.SkipWhile(a => a != "--model").Skip(1).FirstOrDefault();
string? tempModel = null;
if (modelPath is null)
{
    // Until a trained demo model ships with the repository, write a small random checkpoint:
    // timings are real, answers are not meaningful.
    tempModel = Path.Combine(Path.GetTempPath(), $"kvlink-quickstart-{Environment.ProcessId}");
    Console.WriteLine("No --model given: writing a small random Llama checkpoint (answers will be noise; timings are real).");
    SyntheticCheckpoint.Write(tempModel, SyntheticCheckpoint.SmallConfig(hidden: 256, layers: 4, heads: 8, kvHeads: 4), seed: 1);
    modelPath = tempModel;
}

try
{
    await using var engine = await KvLinkEngine.LoadAsync(modelPath, new KvLinkOptions { LinkTokens = 5 });
    var cfg = engine.Model.Config;
    Console.WriteLine($"Model: {modelPath}  ({cfg.NumHiddenLayers} layers, hidden {cfg.HiddenSize}, {engine.Model.DType}), prompt format {engine.PromptFormat.Name}");

    KvLinkDocument[] documents =
    [
        new("Veloria is a coastal city founded in 1721 by the navigator Ilsa Marrow. Its harbour handles amber and salt, and its lighthouse, the Gray Needle, is the tallest in the region. The city council meets every Thursday in the Copper Hall.", "Veloria"),
        new("Ilsa Marrow was a navigator born in the mountain town of Dunhollow. She mapped the Amber Coast, founded Veloria, and later wrote the Book of Tides, a guide to the currents of the northern sea.", "Ilsa Marrow"),
        new("The Gray Needle lighthouse stands 61 metres tall on the northern cliff of Veloria. It was rebuilt in 1894 after a storm, and its lamp is visible from the island of Kesh, 40 kilometres away.", "Gray Needle"),
        new("Dunhollow is a mountain town known for its slate quarries and its winter festival of lanterns. It sits at the source of the river Ost, which flows west to the Amber Coast.", "Dunhollow"),
        new("Kesh is a small island with a population of about 900 people. Its main exports are dried fish and wool, and a ferry connects it to Veloria twice a week.", "Kesh"),
        new("The Book of Tides describes the seasonal currents of the northern sea. It was printed in Veloria in 1750 and remained the standard guide for sailors for over a century.", "Book of Tides"),
    ];

    var clock = System.Diagnostics.Stopwatch.StartNew();
    var ids = new List<string>();
    foreach (var doc in documents) ids.Add(await engine.PrecomputeAsync(doc));
    Console.WriteLine($"Precomputed {ids.Count} documents in {clock.ElapsedMilliseconds} ms (done once; reused by every query).");

    string[] questions =
    [
        "Who founded Veloria?",
        "How tall is the lighthouse of the city founded by Ilsa Marrow?",
        "What does the island connected to Veloria by ferry export?",
    ];
    var kvlink = new KvLinkGenerationOptions { Mode = ContextMode.KvLink, MaxNewTokens = 24 };
    var full = kvlink with { Mode = ContextMode.FullPrefill };
    await engine.GenerateAsync("warm-up", ids, kvlink with { MaxNewTokens = 1 });
    await engine.GenerateAsync("warm-up", ids, full with { MaxNewTokens = 1 });

    foreach (var q in questions)
    {
        var a = await engine.GenerateAsync(q, ids, kvlink);
        var b = await engine.GenerateAsync(q, ids, full);
        double ta = a.Timings.TimeToFirstToken.TotalMilliseconds, tb = b.Timings.TimeToFirstToken.TotalMilliseconds;
        Console.WriteLine();
        Console.WriteLine($"Q: {q}");
        Console.WriteLine($"  KVLink5      TTFT {ta,8:F1} ms  (reused {a.Usage.CachedTokens} cached tokens, computed {a.Usage.ComputedTokens})  A: {Clean(a.Text)}");
        Console.WriteLine($"  Full prefill TTFT {tb,8:F1} ms  (computed {b.Usage.ComputedTokens} tokens)                 A: {Clean(b.Text)}");
        Console.WriteLine($"  KVLink TTFT is {tb / ta:F1}x faster ({100 * (1 - ta / tb):F0} % lower) than full prefill on the same prompt.");
    }
}
finally
{
    if (tempModel is not null) Directory.Delete(tempModel, recursive: true);
}

static string Clean(string s)
{
    var chars = s.Select(c => char.IsControl(c) || c == '\uFFFD' ? '·' : c).ToArray();
    string t = new(chars);
    return t.Length > 60 ? t[..60] + "…" : t;
}
