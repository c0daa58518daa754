using System.Diagnostics;
using System.Text;
using KVLink.Core.Caching;
using KVLink.Core.Engine;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// A cache store under test: memory, the file store with the OS page cache dropped before every request ("cold",
/// posix_fadvise DONTNEED on each entry file) or left warm, the file store writing int8 entries, and the Redis store
/// against a real Redis-protocol server (Microsoft Garnet, in process, loopback), and against Debian's redis-server on
/// loopback: one node, and a 3-master Redis Cluster (issue #16).
/// </summary>
internal sealed record StoreUnderTest(string Name, Func<IKvCacheStore>? Create, string? PendingReason = null, Action? BeforeRun = null, bool FromDisk = false)
{
    public static IReadOnlyList<StoreUnderTest> All(BenchStores stores) =>
    [
        new("memory", () => new MemoryKvCacheStore()),
        new("file (cold)", () => stores.File("cold"), BeforeRun: () => stores.DropPageCache("cold"), FromDisk: true),
        new("file (warm)", () => stores.File("warm")),
        new("file int8 (warm)", () => stores.File("int8", KvCacheQuantization.Int8PerChannel)),
        new("distributed (Redis protocol, Garnet)", stores.Redis),
        // Without redis-server (.ci/redis-server.sh installs it) these rows are listed as pending, not failed.
        BenchRedis.ServerPath is null ? new(RedisSingle, null, NoRedisServer) : new(RedisSingle, () => stores.RedisServer(cluster: false)),
        BenchRedis.ServerPath is null ? new(RedisCluster, null, NoRedisServer) : new(RedisCluster, () => stores.RedisServer(cluster: true)),
    ];

    public const string RedisSingle = "redis-server (single node)";
    public const string RedisCluster = "redis-server cluster (3 masters)";
    private const string NoRedisServer = "redis-server not found: set KVLINK_REDIS_SERVER or run .ci/redis-server.sh";
}

/// <summary>Medians of one (model, store, context) cell.</summary>
internal sealed class TtftCell
{
    public required string Model { get; init; }
    public required string Store { get; init; }
    public required int Context { get; init; }
    /// <summary>Bandwidth the floor moves this store's bytes at: memory copy, or disk reads for a cold file store.</summary>
    public double Bandwidth { get; set; }
    public int PromptTokensFull { get; set; }
    public List<double> FullMs { get; } = [];
    public List<double> LlamaMs { get; } = [];
    public string? LlamaError { get; set; }
    public Dictionary<int, KCell> K { get; } = [];
    public double PrecomputeMs { get; set; }
    /// <summary>PrecomputeAsync of the context's documents alone, ms (PrecomputeMs also holds the first KVLink call).</summary>
    public double EncodeMs { get; set; }
    /// <summary>Serialized entry bytes per document token (KvCacheFormat, header included): as computed, and int8.</summary>
    public double StoredBytesPerToken { get; set; }
    public double Int8BytesPerToken { get; set; }
    /// <summary>Physical floor of the full prefill (<see cref="PhysicalFloor.FullPrefillMs"/>), ms.</summary>
    public double FullPhysicalFloorMs { get; set; }

    /// <summary>
    /// KVLink TTFT / full-prefill TTFT: pair by pair (run i with run i) then the median when both have the same number
    /// of runs; otherwise the ratio of the medians.
    /// </summary>
    public double RatioToFull(KCell k) => FullMs.Count == 0 ? double.NaN
        : FullMs.Count == k.TtftMs.Count ? Stats.Median(k.TtftMs.Zip(FullMs, (a, b) => a / b)) : Stats.Median(k.TtftMs) / Stats.Median(FullMs);
}

internal sealed class KCell
{
    public int PromptTokens { get; set; }
    public int ComputedTokens { get; set; }
    public int CachedTokens { get; set; }
    public long CacheBytes { get; set; }
    public List<double> TtftMs { get; } = [];
    public List<double> LoadMs { get; } = [];
    public List<double> RerotateMs { get; } = [];
    public List<double> PrefillMs { get; } = [];
    public List<double> ForwardFloorMs { get; } = [];
    public List<double> RatioToFloor { get; } = [];
    public double FloorMs(double bandwidth) => CacheBytes / bandwidth * 1000 + Stats.Median(ForwardFloorMs);
    /// <summary>Physical floor of this request (<see cref="PhysicalFloor.KvLinkMs"/>), ms.</summary>
    public double PhysicalFloorMs { get; set; }
}

internal sealed class TtftBench(BenchModel model, BenchOptions options, double copyBandwidth, Action<string> log)
{
    /// <summary>The run's physical floor for this model (null: not measured).</summary>
    public PhysicalFloor? Floor { get; init; }

    public const string Question = "Who built the lighthouse?";

    /// <summary>Documents of exactly context/documents tokens each (header included), distinct per context and slot.</summary>
    public static List<KvLinkDocument> MakeDocuments(BenchModel m, int context, int count)
    {
        var docs = new List<KvLinkDocument>();
        var rng = new Random(context * 31 + 1);
        string[] words = ["harbour", "amber", "lighthouse", "navigator", "river", "slate", "festival", "island", "ferry", "currents", "council", "copper", "tides", "quarry", "lantern", "wool"];
        var format = m.Format;
        if (m.Name == "demo")
        {
            // The demo tokenizer is BPE: each lexicon name (space-prefixed) is exactly one token.
            words = [.. KVLink.Training.SyntheticRagCorpus.Lexicon.All];
            for (int j = 0; j < count; j++)
            {
                int target = context / count + (j < context % count ? 1 : 0);
                string title = words[j];
                int header = format.Document(m.Tokenizer, new KvLinkDocument("x", title), j).Count - 1;
                string text = string.Join(' ', Enumerable.Range(0, target - header).Select(_ => words[rng.Next(words.Length)]));
                var doc = new KvLinkDocument(text, title, $"ctx{context}-doc{j}");
                int got = format.Document(m.Tokenizer, doc, j).Count;
                if (got != target) throw new InvalidOperationException($"document {j} has {got} tokens, wanted {target}");
                docs.Add(doc);
            }
            return docs;
        }
        for (int j = 0; j < count; j++)
        {
            int target = context / count + (j < context % count ? 1 : 0);
            string title = $"Doc {context}-{j}";
            var doc = m.Tokenizer.VocabSize > 512
                ? FitWords(m, format, title, j, target, words, rng, $"ctx{context}-doc{j}")
                : FitBytes(m, format, title, j, target, words, rng, $"ctx{context}-doc{j}");
            int got = format.Document(m.Tokenizer, doc, j).Count;
            if (got != target) throw new InvalidOperationException($"document {j} has {got} tokens, wanted {target}");
            docs.Add(doc);
        }
        return docs;
    }

    /// <summary>Byte-level tokenizer: one token per character, so the text is cut to length.</summary>
    private static KvLinkDocument FitBytes(BenchModel m, KvLinkLlama3Format format, string title, int slot, int target, string[] words, Random rng, string id)
    {
        int header = format.Document(m.Tokenizer, new KvLinkDocument("x", title), slot).Count - 1;
        var sb = new StringBuilder();
        while (sb.Length < target - header) sb.Append(words[rng.Next(words.Length)]).Append(' ');
        return new KvLinkDocument(sb.ToString(0, Math.Max(1, target - header)), title, id);
    }

    /// <summary>
    /// A real BPE vocabulary: the most random words whose document stays within the target (binary search over the
    /// word count), then single-letter words until it is exactly the target.
    /// </summary>
    private static KvLinkDocument FitWords(BenchModel m, KvLinkLlama3Format format, string title, int slot, int target, string[] words, Random rng, string id)
    {
        string[] pool = [.. Enumerable.Range(0, target).Select(_ => words[rng.Next(words.Length)])];
        int Count(string text) => format.Document(m.Tokenizer, new KvLinkDocument(text, title), slot).Count;
        string Text(int n) => string.Join(' ', pool.Take(n));
        int lo = 1, hi = pool.Length;
        while (lo < hi)
        {
            int mid = (lo + hi + 1) / 2;
            if (Count(Text(mid)) <= target) lo = mid; else hi = mid - 1;
        }
        string text = Text(lo);
        for (int guard = 0; Count(text) < target && guard < target; guard++) text += " a";
        return new KvLinkDocument(text, title, id);
    }

    public async Task<TtftCell> RunAsync(StoreUnderTest store, int context, LlamaCppRunner? llama, bool timeLlama)
    {
        await using var engine = new KvLinkEngine(model.Model, model.Tokenizer, new KvLinkOptions { LinkTokens = 0, PromptFormat = model.Format }, store.Create!());
        var cell = new TtftCell { Model = model.Name, Store = store.Name, Context = context, Bandwidth = store.FromDisk && Machine.DiskBandwidth > 0 ? Machine.DiskBandwidth : copyBandwidth };
        double bandwidth = cell.Bandwidth;
        var docs = MakeDocuments(model, context, options.Documents);
        var clock = Stopwatch.StartNew();
        var ids = new List<string>();
        foreach (var d in docs) ids.Add(await engine.PrecomputeAsync(d));
        cell.PrecomputeMs = cell.EncodeMs = clock.Elapsed.TotalMilliseconds;
        var fullLayout = await engine.BuildLayoutAsync(Question, ids, 0);
        cell.PromptTokensFull = fullLayout.Length;
        cell.FullPhysicalFloorMs = Floor?.FullPrefillMs(fullLayout.Length) ?? double.NaN;
        int[] fullTokens = [.. fullLayout.Tokens];
        foreach (int k in options.LinkTokens)
        {
            var layout = await engine.BuildLayoutAsync(Question, ids, k);
            cell.K[k] = new KCell
            {
                PromptTokens = layout.Length,
                CacheBytes = (long)(layout.DocumentTokenCount + layout.PrefixLength) * model.CacheBytesPerToken(),
                PhysicalFloorMs = Floor?.KvLinkMs(layout.ComputedPositions(layout.PrefixLength), layout.DocumentTokenCount + layout.PrefixLength, layout.DocumentTokenCount) ?? double.NaN,
            };
        }

        // The floor's compute part (the computed tokens alone against an already-filled cache) is measured right
        // after each KVLink run, so each TTFT/floor pair shares the same moment of a shared machine.
        // A document's header names its slot, so each cache is per slot: one KVLink call encodes every slot's cache.
        await engine.GenerateAsync(Question, ids, new KvLinkGenerationOptions { Mode = ContextMode.KvLink, LinkTokens = 0, MaxNewTokens = 1 });
        cell.PrecomputeMs = clock.Elapsed.TotalMilliseconds;
        var probes = new Dictionary<int, FloorProbe>();
        foreach (int k in options.LinkTokens)
        {
            var layout = await engine.BuildLayoutAsync(Question, ids, k);
            var entries = new List<(Tensor, Tensor)>();
            for (int slot = 0; slot < ids.Count; slot++)
            {
                var e = await engine.Store.GetAsync(engine.CacheKey(ids[slot], slot)) ?? throw new InvalidOperationException("cache missing");
                entries.Add((e.Keys, e.Values));
            }
            probes[k] = new FloorProbe(model.Model, layout, entries);
        }
        {
            long tokens = 0, dense = 0, int8 = 0;
            for (int slot = 0; slot < ids.Count; slot++)
            {
                using var e = await engine.Store.GetAsync(engine.CacheKey(ids[slot], slot)) ?? throw new InvalidOperationException("cache missing");
                tokens += e.Length;
                dense += KvCacheFormat.Serialize(e).Length;
                int8 += KvCacheFormat.Serialize(e, KvCacheQuantization.Int8PerChannel).Length;
            }
            (cell.StoredBytesPerToken, cell.Int8BytesPerToken) = ((double)dense / tokens, (double)int8 / tokens);
        }
        try
        {
        int runs = options.Runs, fullRuns = context <= options.FullRunsUpTo ? runs : Math.Min(options.FullRuns ?? runs, runs);
        log($"  {model.Name} {store.Name} ctx {context}: {cell.PromptTokensFull} prompt tokens; precompute {cell.PrecomputeMs:F0} ms; {options.Warmup} warm-up + {runs} runs (full prefill {fullRuns})");
        for (int r = -options.Warmup; r < runs; r++)
        {
            bool measured = r >= 0;
            double full = double.NaN;
            if (r < fullRuns && (measured || options.FullWarmup))
            {
                store.BeforeRun?.Invoke();
                var res = await engine.GenerateAsync(Question, ids, new KvLinkGenerationOptions { Mode = ContextMode.FullPrefill, LinkTokens = 0, MaxNewTokens = 1 });
                full = res.Timings.TimeToFirstToken.TotalMilliseconds;
                if (measured) cell.FullMs.Add(full);
                if (llama is not null && timeLlama && r < (options.LlamaRuns ?? int.MaxValue))
                {
                    double l = llama.PrefillMs(fullTokens);
                    if (measured) cell.LlamaMs.Add(l);
                    log($"    run {r}: full {full:F0} ms, llama.cpp {l:F0} ms");
                }
                else log($"    run {r}: full {full:F0} ms");
            }
            foreach (int k in options.LinkTokens)
            {
                store.BeforeRun?.Invoke();
                var res = await engine.GenerateAsync(Question, ids, new KvLinkGenerationOptions { Mode = ContextMode.KvLink, LinkTokens = k, MaxNewTokens = 1 });
                double forwardAlone = probes[k].Measure();
                if (!measured) continue;
                var c = cell.K[k];
                c.ComputedTokens = res.Usage.ComputedTokens;
                c.CachedTokens = res.Usage.CachedTokens;
                double t = res.Timings.TimeToFirstToken.TotalMilliseconds;
                c.TtftMs.Add(t);
                c.LoadMs.Add(res.Timings.CacheLoad.TotalMilliseconds);
                c.RerotateMs.Add(res.Timings.Rerotation.TotalMilliseconds);
                c.PrefillMs.Add(res.Timings.Prefill.TotalMilliseconds);
                c.ForwardFloorMs.Add(forwardAlone);
                c.RatioToFloor.Add(t / (c.CacheBytes / bandwidth * 1000 + forwardAlone));
            }
        }
        }
        finally
        {
            foreach (var p in probes.Values) p.Dispose();
        }

        return cell;
    }

    /// <summary>Decode tokens per second after a KVLink prefill at <paramref name="context"/> (stop tokens disabled).</summary>
    public async Task<(double TokensPerSecond, double TtftMs)> DecodeAsync(int context, int tokens, bool int8 = false)
    {
        await using var engine = new KvLinkEngine(model.Model, model.Tokenizer, new KvLinkOptions { LinkTokens = 5, PromptFormat = model.Format, DecodeWithInt8Weights = int8 });
        var ids = new List<string>();
        foreach (var d in MakeDocuments(model, context, options.Documents)) ids.Add(await engine.PrecomputeAsync(d));
        var opts = new KvLinkGenerationOptions { Mode = ContextMode.KvLink, LinkTokens = 5, MaxNewTokens = tokens, StopTokenIds = [] };
        await engine.GenerateAsync(Question, ids, opts with { MaxNewTokens = 4 });
        var rates = new List<double>();
        double ttft = 0;
        for (int r = 0; r < Math.Max(1, Math.Min(options.Runs, 3)); r++)
        {
            var res = await engine.GenerateAsync(Question, ids, opts);
            ttft = res.Timings.TimeToFirstToken.TotalMilliseconds;
            rates.Add((res.TokenIds.Count - 1) / (res.Timings.Total - res.Timings.TimeToFirstToken).TotalSeconds);
        }
        return (Stats.Median(rates), ttft);
    }
}

/// <summary>A KV cache with the prefix and every document already placed: times the forward pass over the computed tokens alone.</summary>
internal sealed class FloorProbe : IDisposable
{
    private readonly LlamaForCausalLM _model;
    private readonly PromptLayout _layout;
    private readonly AttentionCache _cache;

    public FloorProbe(LlamaForCausalLM model, PromptLayout layout, List<(Tensor, Tensor)> entries)
    {
        (_model, _layout) = (model, layout);
        using var _ = no_grad();
        _cache = new AttentionCache(model.Config, layout.Length + 1, model.DType, model.Device); // outlives the scope below
        using var scope = NewDisposeScope();
        if (layout.PrefixLength > 0)
        {
            var (pk, pv) = DocumentEncoder.Encode(model, [.. layout.Tokens.Take(layout.PrefixLength)]);
            _cache.Write(0, pk, pv);
        }
        DocumentPlacement.Place(model, _cache, layout, entries);
    }

    public double Measure()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var c = Stopwatch.StartNew();
        var logits = LinkTokenPass.Forward(_model, _cache, _layout, lastOnly: true, from: _layout.PrefixLength);
        logits.argmax(-1).item<long>();
        return c.Elapsed.TotalMilliseconds;
    }

    public void Dispose() => _cache.Dispose();
}
