using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Tests.Engine;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Reliability;

/// <summary>After warm-up, many requests leave the live native tensor count and the process RSS flat.</summary>
[Collection(SerialCollection.Name)]
public class NativeMemoryTests(CheckpointFixture fx, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<CheckpointFixture>
{
    [Fact]
    public async Task Repeated_generation_leaks_no_tensors_and_no_memory()
    {
        await using var engine = fx.Engine(linkTokens: 5);
        var ids = new List<string>();
        for (int i = 0; i < 4; i++) ids.Add(await engine.PrecomputeAsync(CheckpointFixture.Doc(60 + i, 10)));
        var kvlink = new KvLinkGenerationOptions { MaxNewTokens = 4, StopTokenIds = [] };
        var full = kvlink with { Mode = ContextMode.FullPrefill };

        async Task Round(int i)
        {
            await engine.GenerateAsync($"q{i}?", ids, kvlink);
            await engine.GenerateAsync($"q{i}?", ids, full);
            await foreach (var _ in engine.GenerateStreamingAsync($"s{i}?", ids, kvlink)) { }
        }

        for (int i = 0; i < 20; i++) await Round(i);
        Settle();
        long tensorsBefore = Tensor.TotalCount;
        long rssBefore = Environment.WorkingSet;

        for (int i = 0; i < Rounds; i++) await Round(i);
        Settle();
        long tensorsAfter = Tensor.TotalCount;
        long rssAfter = Environment.WorkingSet;

        output.WriteLine($"{3 * Rounds} requests: live tensors {tensorsBefore} -> {tensorsAfter}; RSS {rssBefore >> 20} MiB -> {rssAfter >> 20} MiB");
        Assert.True(tensorsBefore > 0, "TorchSharp must be counting live tensors");
        Assert.Equal(tensorsBefore, tensorsAfter);
        Assert.True(rssAfter - rssBefore < 64L << 20, $"RSS grew by {(rssAfter - rssBefore) >> 20} MiB over {3 * Rounds} requests");
    }

    /// <summary>300 rounds (900 requests) in the regular run; KVLINK_NATIVE_ROUNDS sets the long run (docs/reliability.md).</summary>
    private static int Rounds => int.TryParse(Environment.GetEnvironmentVariable("KVLINK_NATIVE_ROUNDS"), out int n) && n > 0 ? n : 300;

    private static void Settle()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }
}
