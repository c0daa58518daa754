// KVLink.Core quickstart: precompute documents once, then answer questions from their stored KV caches
// (KVLink) and, for comparison, by encoding the same prompt whole (full prefill), printing both answers and
// their time to first token side by side.
//
// By default it runs the embedded demo model (models/kvlink-demo): a 1M-parameter Llama trained in this
// repository, from scratch and on CPU, to answer questions about the fictional people, cities and companies of
// the synthetic RAG corpus. Pass --model <folder> to run any Hugging Face Llama checkpoint instead.
using System.Globalization;
using KVLink.Demo;
using KVLink.Core.Engine;
using KVLink.Quickstart;
using KVLink.Training.Evaluation;
using KVLink.Core.Prompting;
using KVLink.Training;

string? modelPath = args.SkipWhile(a => a != "--model").Skip(1).FirstOrDefault();
string? seedArg = args.SkipWhile(a => a != "--seed").Skip(1).FirstOrDefault();
ulong drawSeed = HeldOutQuestions.DefaultDrawSeed;
if (seedArg is not null && !ulong.TryParse(seedArg, NumberStyles.None, CultureInfo.InvariantCulture, out drawSeed))
{
    Console.Error.WriteLine($"--seed must be a non-negative integer (was '{seedArg}').");
    return 1;
}
modelPath ??= DemoModel.FindFolder()
    ?? throw new DirectoryNotFoundException("models/kvlink-demo was not found: run from the repository, or pass --model <checkpoint folder>.");

// One cache per document serves every slot: the demo model is trained with a header that carries no slot number
// (its kvlink_prompt.json says so), and for numbered-header checkpoints the default SlotPolicy.Shared serves the
// slot-0 cache everywhere. So a query over precomputed documents computes only link tokens, markers and question.
var options = new KvLinkOptions { LinkTokens = 5, DType = ComputeDType.Float32 };
await using var engine = await DemoModel.LoadEngineAsync(modelPath, options);
Console.WriteLine($"Model: {modelPath}");
Console.WriteLine($"       {engine.ModelId}, {engine.Options.DType}; prompt format {engine.PromptFormat.Name}");

// The model's measured accuracy, recorded next to its weights by the measurement that wrote docs/accuracy.md (the
// KVLink.Demo package ships it with the model). It also names the held-out split it was measured on.
var record = AccuracyRecord.Read(modelPath);
// Six questions drawn at random (fixed seed) from that held-out split (never seen in training), each with its own 5-10
// documents: the facts are invented per question, so the answer can only come from the documents. Without a record
// (another checkpoint), the demo recipe's split: corpus seed 1234, 500 questions of each kind.
ulong corpusSeed = record?.CorpusSeed ?? 1234;
int splitPerKind = record?.QuestionsPerKind ?? 500;
var questions = HeldOutQuestions.Draw(corpusSeed, splitPerKind, drawSeed);
Console.WriteLine($"Questions: {questions.Count} drawn at random (seed {drawSeed}) from the held-out split ({splitPerKind} single-hop + {splitPerKind} two-hop questions of the synthetic corpus, seed {corpusSeed})");
var kvlink = new KvLinkGenerationOptions { Mode = ContextMode.KvLink, MaxNewTokens = 24 };
var full = kvlink with { Mode = ContextMode.FullPrefill };
int correct = 0;
double kvlinkTotal = 0, fullTotal = 0;
for (int i = 0; i < questions.Count; i++)
{
    var q = questions[i];
    var clock = System.Diagnostics.Stopwatch.StartNew();
    var ids = new List<string>();
    foreach (var doc in q.Sample.Documents) ids.Add(await engine.PrecomputeAsync(doc));
    Console.WriteLine();
    Console.WriteLine($"[{i + 1}] Precomputed {ids.Count} documents in {clock.ElapsedMilliseconds} ms (once; every later query reuses their caches):");
    foreach (var doc in q.Sample.Documents) Console.WriteLine($"      {doc.Text}");
    if (i == 0)
    {
        // Warm-up: the first request of an engine also encodes the shared prompt prefix.
        await engine.GenerateAsync(q.Sample.Question, ids, kvlink with { MaxNewTokens = 1 });
        await engine.GenerateAsync(q.Sample.Question, ids, full with { MaxNewTokens = 1 });
    }
    var a = await engine.GenerateAsync(q.Sample.Question, ids, kvlink);
    var b = await engine.GenerateAsync(q.Sample.Question, ids, full);
    double ta = a.Timings.TimeToFirstToken.TotalMilliseconds, tb = b.Timings.TimeToFirstToken.TotalMilliseconds;
    bool ok = AnswerMetric.IsCorrect(a.Text, [q.Gold]);
    if (ok) correct++;
    kvlinkTotal += ta;
    fullTotal += tb;
    Console.WriteLine($"    Q: {q.Sample.Question}   (expected: {q.Gold}; {(q.Kind == SyntheticQuestionKind.TwoHop ? "two documents needed" : "one document needed")})");
    Console.WriteLine($"    KVLink5      A: {Clean(a.Text),-80} {(ok ? "correct" : "wrong")}");
    Console.WriteLine($"                 TTFT {ta,6:F2} ms (reused {a.Usage.CachedTokens} cached tokens, computed {a.Usage.ComputedTokens})");
    Console.WriteLine($"    Full prefill A: {Clean(b.Text),-80} {(AnswerMetric.IsCorrect(b.Text, [q.Gold]) ? "correct" : "wrong")}");
    Console.WriteLine($"                 TTFT {tb,6:F2} ms (computed {b.Usage.ComputedTokens} tokens)");
}
Console.WriteLine();
Console.WriteLine($"KVLink5 answered {correct}/{questions.Count} correctly. Mean TTFT: KVLink {kvlinkTotal / questions.Count:F2} ms vs full prefill {fullTotal / questions.Count:F2} ms ({fullTotal / kvlinkTotal:F1}x), same prompts, same run.");
Console.WriteLine(RecordedAccuracy(record, options.LinkTokens));
Console.WriteLine("The demo model is tiny and its prompts short; docs/benchmarks.md measures TTFT on a Llama-3.2-1B-shaped model at 1k-10k tokens.");

return 0;

// Six questions are too few to judge a model by: the measured accuracy on the whole split, beside the count above.
static string RecordedAccuracy(AccuracyRecord? record, int linkTokens)
{
    var kvlink = record?.KvLink(linkTokens);
    if (record is null || kvlink is null)
        return "This model has no accuracy record (accuracy.json); docs/accuracy.md measures the demo models on the held-out split.";
    var full = record.FullPrefill;
    string upper = full is null ? "" : $"; full prefill {Pct(full.SingleHopPercent)} / {Pct(full.TwoHopPercent)}";
    return $"Measured on the whole split ({record.QuestionsPerKind} + {record.QuestionsPerKind} questions, {record.Measured:yyyy-MM-dd}; {record.Source}): " +
        $"KVLink{linkTokens} {Pct(kvlink.SingleHopPercent)} single-hop, {Pct(kvlink.TwoHopPercent)} two-hop{upper}.";
}

static string Pct(double percent) => percent.ToString("F1", CultureInfo.InvariantCulture) + " %";

static string Clean(string s)
{
    var chars = s.Trim().Select(c => char.IsControl(c) || c == '\uFFFD' ? '·' : c).ToArray();
    string t = new(chars);
    return t.Length > 80 ? t[..79] + "…" : t;
}
