using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using KVLink.Training;

namespace KVLink.Benchmarks;

/// <summary>
/// The ASP.NET sample under load (--http-load, issue #13): the real sample app (<see cref="SampleServer"/>, demo model)
/// and C parallel streaming HTTP clients in a closed loop, each sending its next OpenAI-style streaming request when its
/// last answer ended, for every C of --users; plus the serial baseline in the same run (the sample started with
/// <c>KvLink__MaxRunningSequences=1</c>). Every level gets a fresh server, so no level finds the previous one's
/// conversations or documents; its documents are precomputed through POST /documents before the clock starts.
/// Questions are the synthetic corpus's evaluation questions (the demo model's domain), a different one per request.
/// </summary>
internal static class HttpLoadBench
{
    private sealed record Level(string Name, int Users, int MaxRunning, double WallS, List<StreamedAnswer> Answers)
    {
        public int Requests => Answers.Count;
        public List<double> Ttft => [.. Answers.Select(a => a.TtftMs)];
        public List<double> Gaps => [.. Answers.SelectMany(a => a.GapsMs)];
        public long Tokens => Answers.Sum(a => (long)a.CompletionTokens);
        public double TokensPerS => Tokens / WallS;
        public double RequestsPerS => Requests / WallS;
        /// <summary>Decode rate of all clients together: clients / median gap between content chunks (as --load's; meaningless when one sequence runs at a time).</summary>
        public double DecodeTokensPerS => Users * 1000 / Stats.Median(Gaps);
    }

    public static async Task RunAsync(BenchOptions o)
    {
        var md = new StringBuilder();
        string machine = Machine.Describe();
        Console.WriteLine(machine);
        md.AppendLine(CultureInfo.InvariantCulture, $"Command: `dotnet run -c Release --project benchmarks/KVLink.Benchmarks -- {o.CommandLine}`  ");
        md.AppendLine(CultureInfo.InvariantCulture, $"Machine: {machine}; load average before: {Machine.LoadAverage()}  ");
        md.AppendLine(CultureInfo.InvariantCulture, $"Server: {Path.GetRelativePath(Directory.GetCurrentDirectory(), SampleServer.FindApp())} as a child process (demo model, its appsettings.json: bf16, K = 5), one fresh process per row.").AppendLine();

        int maxQuestions = o.Users.Max() * (Rounds(o, 1) + WarmRounds(1)); // every request and warm-up request asks its own
        var questions = SyntheticRagCorpus.Generate(new SyntheticRagCorpusOptions { TrainQuestionsPerKind = 0, EvalQuestionsPerKind = maxQuestions / 2 + 1 }).Eval;
        md.Append(CultureInfo.InvariantCulture,
            $"Each request: one evaluation question of the synthetic corpus with its 5-10 documents (precomputed through POST /documents before the clock starts), a different question per request, streamed (`stream: true`), greedy, `max_tokens` {o.LoadTokens} (answers end earlier at the end-of-turn token); {o.LoadRounds} requests per client (at least 4 per row), after a warm-up of the same clients asking other questions (at least 2 rounds and 16 requests). ");
        md.AppendLine(
            "Client TTFT: from sending the request to the first chunk with content; server TTFT: the engine's own (`kvlink.ttft_ms`, queue wait included); inter-token: every gap between consecutive content chunks of an answer; tokens: `usage.completion_tokens`.").AppendLine();

        var levels = new List<Level>();
        int serialUsers = o.Users.Contains(8) ? 8 : o.Users.Max();
        foreach (int users in o.Users)
        {
            levels.Add(await ClosedLoop(o, questions, users, maxRunning: null));
            Print(levels[^1]);
            if (users == serialUsers)
            {
                levels.Add(await ClosedLoop(o, questions, users, maxRunning: 1));
                Print(levels[^1]);
            }
            File.WriteAllText(o.Output, md.ToString() + Table(levels)); // a run cut short still leaves its rows
        }
        md.Append(Table(levels));
        var single = levels.FirstOrDefault(l => l.Users == 1 && l.MaxRunning != 1);
        var batched = levels.First(l => l.Users == serialUsers && l.MaxRunning != 1);
        var serial = levels.First(l => l.MaxRunning == 1);
        md.AppendLine();
        if (single is not null)
            md.AppendLine(CultureInfo.InvariantCulture,
                $"At {batched.Users} clients: aggregate decode {batched.DecodeTokensPerS:F0} tok/s = **{batched.DecodeTokensPerS / single.DecodeTokensPerS:F2}x** one client's ({single.DecodeTokensPerS:F0}); generated {batched.TokensPerS:F1} tok/s = **{batched.TokensPerS / single.TokensPerS:F2}x** one client's ({single.TokensPerS:F1}); " +
                $"p95 client TTFT {LoadBench.Pct(batched.Ttft, 95):F0} ms = **{LoadBench.Pct(batched.Ttft, 95) / Stats.Median(single.Ttft):F2}x** one client's median ({Stats.Median(single.Ttft):F0} ms).  ");
        md.AppendLine(CultureInfo.InvariantCulture,
            $"Serial baseline at {serial.Users} clients (MaxRunningSequences 1): {serial.TokensPerS:F1} tok/s (batched / serial = **{batched.TokensPerS / serial.TokensPerS:F2}x**), p95 client TTFT {LoadBench.Pct(serial.Ttft, 95):F0} ms against {LoadBench.Pct(batched.Ttft, 95):F0} ms batched.");
        md.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"A sample answer: \"{levels[0].Answers[0].Text.Trim()}\"").AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Load average after: {Machine.LoadAverage()}");
        File.WriteAllText(o.Output, md.ToString());
        Console.WriteLine($"wrote {o.Output}");
    }

    private static int Rounds(BenchOptions o, int users) => Math.Max(o.LoadRounds, (int)Math.Ceiling(4.0 / users)); // at least 4 requests per row

    // The warm-up: the same clients, at least 2 rounds and 16 requests, so that every row starts from a server whose JIT
    // has tiered up the request path as far (one warm-up request left the 1-client row measuring tier-0 code).
    private static int WarmRounds(int users) => Math.Max(2, (int)Math.Ceiling(16.0 / users));

    /// <summary>A fresh sample server, the questions' documents posted to it, one warm-up request, then C clients in a closed loop.</summary>
    private static async Task<Level> ClosedLoop(BenchOptions o, IReadOnlyList<SyntheticRagQuestion> questions, int users, int? maxRunning)
    {
        var environment = new Dictionary<string, string>();
        if (maxRunning is { } m) environment["KvLink__MaxRunningSequences"] = m.ToString(CultureInfo.InvariantCulture);
        await using var server = await SampleServer.StartAsync(environment, TimeSpan.FromMinutes(3));
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromMinutes(10) };
        int rounds = Rounds(o, users);
        // Request k of the row asks question k; the questions after them warm up (kernels, JIT, the prompt's prefix cache,
        // batched steps of C sequences), asked by the same C clients in the same closed loop.
        int warmRounds = WarmRounds(users);
        var asked = questions.Take(users * (rounds + warmRounds)).ToList();
        var ids = new List<string[]>();
        var posted = new Dictionary<(string, string?), string>();
        foreach (var q in asked)
        {
            var docIds = new string[q.Sample.Documents.Count];
            for (int i = 0; i < docIds.Length; i++)
            {
                var d = q.Sample.Documents[i];
                if (!posted.TryGetValue((d.Text, d.Title), out string? id))
                    posted[(d.Text, d.Title)] = id = await PostDocument(http, d.Text, d.Title, server);
                docIds[i] = id;
            }
            ids.Add(docIds);
        }
        await Loop(http, o, asked, ids, users, warmRounds, first: users * rounds);
        var wall = Stopwatch.StartNew();
        var answers = await Loop(http, o, asked, ids, users, rounds, first: 0);
        double wallS = wall.Elapsed.TotalSeconds;
        string name = maxRunning == 1 ? $"serial baseline, {users} clients" : $"{users} clients";
        return new Level(name, users, maxRunning ?? 16, wallS, answers);
    }

    /// <summary>C clients, each asking <paramref name="rounds"/> questions back to back (client u: questions first + u * rounds, ...).</summary>
    private static async Task<List<StreamedAnswer>> Loop(HttpClient http, BenchOptions o, List<SyntheticRagQuestion> asked, List<string[]> ids, int users, int rounds, int first)
    {
        var answers = new List<StreamedAnswer>();
        var gate = new Lock();
        await Task.WhenAll(Enumerable.Range(0, users).Select(u => Task.Run(async () =>
        {
            for (int r = 0; r < rounds; r++)
            {
                int k = first + u * rounds + r;
                var answer = await StreamingChat.SendAsync(http, asked[k].Sample.Question, ids[k], o.LoadTokens);
                lock (gate) answers.Add(answer);
            }
        })));
        return answers;
    }

    internal static async Task<string> PostDocument(HttpClient http, string text, string? title, SampleServer server)
    {
        using var response = await http.PostAsJsonAsync("documents", new JsonObject { ["text"] = text, ["title"] = title });
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"{(int)response.StatusCode} from POST /documents: {await response.Content.ReadAsStringAsync()}\n{server.Tail}");
        return (await response.Content.ReadFromJsonAsync<JsonObject>())!["id"]!.GetValue<string>();
    }

    private static void Print(Level l) =>
        Console.WriteLine($"  {l.Name} (max running {l.MaxRunning}): {l.Requests} requests in {l.WallS:F1} s; client TTFT p50 {Stats.Median(l.Ttft):F0} p95 {LoadBench.Pct(l.Ttft, 95):F0} p99 {LoadBench.Pct(l.Ttft, 99):F0} ms " +
            $"(server p50 {Stats.Median(l.Answers.Select(a => a.ServerTtftMs)):F0} ms); inter-token p50 {Stats.Median(l.Gaps):F1} p95 {LoadBench.Pct(l.Gaps, 95):F1} ms; " +
            $"{l.TokensPerS:F1} tok/s, {l.RequestsPerS:F2} req/s; load {Machine.LoadAverage()}");

    private static string Table(IEnumerable<Level> levels)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| run | max running | requests | client TTFT p50 / p95 / p99 (ms) | server TTFT p50 (ms) | inter-token p50 / p95 (ms) | aggregate decode tok/s (clients / inter-token p50) | tokens / request | generated tok/s (wall) | requests/s |");
        sb.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var l in levels)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {l.Name} | {l.MaxRunning} | {l.Requests} | {Stats.Median(l.Ttft):F0} / {LoadBench.Pct(l.Ttft, 95):F0} / {LoadBench.Pct(l.Ttft, 99):F0} | {Stats.Median(l.Answers.Select(a => a.ServerTtftMs)):F0} | " +
                $"{Stats.Median(l.Gaps):F1} / {LoadBench.Pct(l.Gaps, 95):F1} | {(l.MaxRunning == 1 ? "–" : l.DecodeTokensPerS.ToString("F0", CultureInfo.InvariantCulture))} | {(double)l.Tokens / l.Requests:F1} | {l.TokensPerS:F1} | {l.RequestsPerS:F2} |");
        return sb.ToString();
    }
}
