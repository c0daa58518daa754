using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.NoEmit;
using KVLink.Core.Caching;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using KVLink.Core.Model.SafeTensors;
using KVLink.Core.Prompting;
using Perfolizer.Horology;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>Kernel-level costs on the 1B shape (16 layers, 8 kv heads, head_dim 64, bf16), with bytes/s.</summary>
internal static class MicroBenchmarks
{
    internal static int Threads = 2;
    internal static string Folder = Path.GetTempPath();
    internal const int Layers = 16, KvHeads = 8, HeadDim = 64, DocTokens = 500, Docs = 10;
    internal static long DocBytes => 2L * Layers * KvHeads * DocTokens * HeadDim * 2; // keys + values, bf16

    public static List<MicroResult> Run(BenchOptions options, string folder)
    {
        Threads = options.Threads;
        Folder = folder;
        Directory.CreateDirectory(folder);
        var job = Job.Default
            .WithToolchain(InProcessNoEmitToolchain.Instance)
            .WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(5)
            .WithIterationTime(TimeInterval.FromMilliseconds(150));
        var config = ManualConfig.CreateEmpty().AddJob(job).AddLogger(ConsoleLogger.Default)
            .AddColumnProvider(BenchmarkDotNet.Columns.DefaultColumnProviders.Instance)
            .WithOptions(ConfigOptions.DisableOptimizationsValidator | ConfigOptions.JoinSummary);
        var summary = BenchmarkRunner.Run([typeof(RerotationBench), typeof(SerializationBench), typeof(StoreBench)], config);
        var results = new List<MicroResult>();
        foreach (var s in summary)
            foreach (var r in s.Reports)
            {
                if (r.ResultStatistics is null) continue;
                var method = r.BenchmarkCase.Descriptor.WorkloadMethod;
                var info = (BytesAttribute?)Attribute.GetCustomAttribute(method, typeof(BytesAttribute));
                results.Add(new MicroResult($"{method.DeclaringType!.Name}.{method.Name}", info?.Size ?? "", r.ResultStatistics.Mean,
                    r.ResultStatistics.ConfidenceInterval.Margin, info?.Bytes ?? 0));
            }
        return results;
    }

    internal static (Tensor Keys, Tensor Values) RandomDoc(int tokens)
    {
        var k = randn([Layers, KvHeads, tokens, HeadDim], ScalarType.Float32).to(ScalarType.BFloat16);
        var v = randn([Layers, KvHeads, tokens, HeadDim], ScalarType.Float32).to(ScalarType.BFloat16);
        return (k, v);
    }
}

/// <summary>Bytes one call moves, for the throughput column.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class BytesAttribute(string size, long bytes) : Attribute
{
    public string Size { get; } = size;
    public long Bytes { get; } = bytes;
}

public class RerotationBench
{
    private Tensor _keys = null!, _offsets = null!, _values = null!;
    private RotaryEmbedding _rope = null!;
    private readonly long[] _offsetList = [.. Enumerable.Repeat(1234L, MicroBenchmarks.DocTokens)];
    private LlamaForCausalLM _model = null!;
    private AttentionCache _cache = null!;
    private PromptLayout _layout = null!;
    private List<(Tensor, Tensor)> _docs = null!;
    private const long DocKeyBytes = 16L * 8 * 500 * 64 * 2;

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(MicroBenchmarks.Threads);
        var config = BenchModel.Llama32OneB() with { VocabSize = 512, IntermediateSize = 64, HiddenSize = 64, NumAttentionHeads = 8 };
        _rope = new RotaryEmbedding(config);
        (_keys, _values) = MicroBenchmarks.RandomDoc(MicroBenchmarks.DocTokens);
        _offsets = full([MicroBenchmarks.DocTokens], 1234L, ScalarType.Int64);
        // A tiny stand-in model: PlaceDocuments needs only its config, dtype and RoPE (kv shape as the 1B).
        _model = new LlamaForCausalLM(config, ScalarType.BFloat16, META);
        int docs = MicroBenchmarks.Docs, len = MicroBenchmarks.DocTokens;
        _docs = [.. Enumerable.Range(0, docs).Select(_ => MicroBenchmarks.RandomDoc(len))];
        var tokens = new List<int>(); var segments = new List<int>(); var spans = new List<DocumentSpan>();
        for (int d = 0; d < docs; d++)
        {
            spans.Add(new DocumentSpan(d, tokens.Count, [.. Enumerable.Repeat(65, len)]));
            tokens.AddRange(Enumerable.Repeat(65, len)); segments.AddRange(Enumerable.Repeat(d + 1, len));
            tokens.Add(300); segments.Add(0);
        }
        _layout = new PromptLayout(tokens, segments, spans);
        _cache = new AttentionCache(config, tokens.Count + 1, ScalarType.BFloat16, CPU);
    }

    [Benchmark(Baseline = true), Bytes("1 doc, 500 tokens, keys, tensor path (fp32 temporaries)", 16L * 8 * 500 * 64 * 2)]
    public void RerotateDocumentKeys()
    {
        using var scope = NewDisposeScope();
        RopeRerotation.Shift(_keys, _offsets, _rope);
    }

    [Benchmark, Bytes("1 doc, 500 tokens, keys, fused in place", 16L * 8 * 500 * 64 * 2)]
    public void RerotateDocumentKeysInPlace()
    {
        RopeRerotation.ShiftInPlace(_keys, _offsetList, _rope);
    }

    [Benchmark, Bytes("10 docs x 500 tokens, K+V copied, keys rotated", 10 * 2 * 16L * 8 * 500 * 64 * 2)]
    public void PlaceDocuments()
    {
        using var scope = NewDisposeScope();
        DocumentPlacement.Place(_model, _cache, _layout, _docs);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _cache.Dispose(); _model.Dispose();
        _keys.Dispose(); _values.Dispose(); _offsets.Dispose();
        foreach (var (k, v) in _docs) { k.Dispose(); v.Dispose(); }
    }
}

public class SerializationBench
{
    private Tensor _keys = null!, _values = null!;
    private string _path = "";

    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(MicroBenchmarks.Threads);
        (_keys, _values) = MicroBenchmarks.RandomDoc(MicroBenchmarks.DocTokens);
        _path = Path.Combine(MicroBenchmarks.Folder, "doc.safetensors");
        Write();
    }

    [Benchmark, Bytes("1 doc, 500 tokens, K+V bf16", 2 * 16L * 8 * 500 * 64 * 2)]
    public void Write() => SafeTensorsWriter.Write(_path, [new("keys", _keys), new("values", _values)]);

    [Benchmark, Bytes("1 doc, 500 tokens, K+V bf16 (page cache warm)", 2 * 16L * 8 * 500 * 64 * 2)]
    public void Read()
    {
        using var file = SafeTensorsFile.Open(_path);
        using var k = file.Read("keys");
        using var v = file.Read("values");
    }

    [GlobalCleanup]
    public void Cleanup() { _keys.Dispose(); _values.Dispose(); }
}

public class StoreBench
{
    private MemoryKvCacheStore _store = null!;
    private KvCacheKey _key = null!;

    [GlobalSetup]
    public void Setup()
    {
        _store = new MemoryKvCacheStore();
        var (k, v) = MicroBenchmarks.RandomDoc(MicroBenchmarks.DocTokens);
        var entry = new DocumentKvCache("doc", 0, [.. Enumerable.Repeat(65, MicroBenchmarks.DocTokens)], k, v, "fp", "fmt", null, "x");
        _key = entry.Key;
        _store.PutAsync(_key, entry).AsTask().Wait();
    }

    [Benchmark, Bytes("memory store, 1 doc (returns a handle on the stored tensors)", 0)]
    public int MemoryGet()
    {
        using var entry = _store.GetAsync(_key).AsTask().Result;
        return entry!.Length;
    }
}
