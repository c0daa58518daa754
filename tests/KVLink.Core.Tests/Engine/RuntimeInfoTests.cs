using System.Collections.Concurrent;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Hosting;
using KVLink.Core.Model;
using KVLink.Core.Native;
using KVLink.TestSupport;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KVLink.Core.Tests.Engine;

/// <summary>
/// What an engine reports about its machine: <see cref="KvLinkEngine.RuntimeInfo"/>, the system-info log line (once, at
/// load) and the health check's data; and an Auto engine that resolves to float32 decoding through its bf16 copies.
/// </summary>
public sealed class RuntimeInfoTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    private const int SystemInfoEvent = 11;

    /// <summary>A calibration folder whose entry for this machine says bf16 GEMMs are 5x slower than float32 (an AVX2 CPU's figures).</summary>
    private static TempFolder SlowBf16Calibration()
    {
        var dir = new TempFolder();
        string key = DTypeCalibration.MachineKey();
        DTypeCalibration.TryWrite(DTypeCalibration.PathFor(dir.Path, key)!, key, new GemmRates(15, 74));
        return dir;
    }

    [Fact]
    public async Task An_auto_engine_where_bf16_is_slower_computes_in_float32_decodes_through_bf16_copies_and_logs_it_once()
    {
        using var calibration = SlowBf16Calibration();
        var logger = new ListLogger();
        var options = new KvLinkOptions { LinkTokens = 1, PromptFormat = fixture.Format, CalibrationCacheFolder = calibration.Path };
        Assert.Equal(ComputeDType.Auto, options.DType); // the default
        await using var auto = await KvLinkEngine.LoadAsync(fixture.Folder, options, diagnostics: new KvLinkDiagnostics { Logger = logger, Name = "auto" });
        var info = auto.RuntimeInfo;
        Assert.Equal(TorchSharp.torch.ScalarType.Float32, auto.Model.DType);
        Assert.Equal(ComputeDType.Float32, info.ComputeDType);
        Assert.StartsWith(CpuCapabilities.Current.Tier.ComputesBf16Natively() ? "cached:" : "table:", info.ComputeDTypeReason, StringComparison.Ordinal);
        Assert.Equal(CpuCapabilities.Current.Tier.Name(), info.CpuTier);
        Assert.Equal(CpuCapabilities.Current.Model, info.CpuModel);
        bool vector = DecodeGemv.Vectorized(fixture.Model.Config.HiddenSize);
        Assert.Equal(vector, info.DecodeKernel.StartsWith("bf16 copies of float32 weights", StringComparison.Ordinal));
        var c = fixture.Model.Config;
        bool large = Math.Max(2L * c.IntermediateSize * c.HiddenSize, (long)c.VocabSize * c.HiddenSize) >= SmallRowsGemm.MinWeightElements;
        Assert.Equal(vector && large, info.PromptKernel.EndsWith($"kernel at {SmallRowsGemm.MinRows}-{SmallRowsGemm.MaxRows} rows (weights of 1 MB and more), LibTorch GEMM beyond", StringComparison.Ordinal));
        Assert.Equal(!(vector && large), info.PromptKernel == "LibTorch GEMM");
        // A float32 model on a vector tier: link passes over long caches take the attention kernel.
        Assert.Equal(SmallRowsAttention.TakesHeadsOf(c) ? $"{DecodeGemv.KernelName} kernel at 4-256 folded rows over 1,024-32,768 keys, LibTorch SDPA beyond" : "LibTorch SDPA", info.AttentionKernel);

        var line = Assert.Single(logger.Entries, e => e.Id == SystemInfoEvent);
        Assert.Equal(LogLevel.Information, line.Level);
        foreach (string part in (string[])["'auto'", $"tier {info.CpuTier}", "compute dtype Float32", info.ComputeDTypeReason, $"prompt rows {info.PromptKernel}", $"attention {info.AttentionKernel}", $"decode {info.DecodeKernel}", info.LibTorchCpuCapability])
            Assert.Contains(part, line.Message, StringComparison.Ordinal);

        // Prompts run the float32 GEMMs, so the first token is the exact float32 engine's; the copies only serve decoding rows.
        await using var exact = await KvLinkEngine.LoadAsync(fixture.Folder, new KvLinkOptions { LinkTokens = 1, PromptFormat = fixture.Format, DType = ComputeDType.Float32 });
        Assert.Equal(("explicit", ComputeDType.Float32), (exact.RuntimeInfo.ComputeDTypeReason, exact.RuntimeInfo.ComputeDType));
        Assert.StartsWith("LibTorch GEMM", exact.RuntimeInfo.DecodeKernel, StringComparison.Ordinal); // explicit float32 stays exact
        Assert.Equal(auto.ModelFingerprint, exact.ModelFingerprint); // same weights, same dtype: one cache identity
        var doc = CheckpointFixture.Doc(3);
        string a = await auto.PrecomputeAsync(doc), b = await exact.PrecomputeAsync(doc);
        var generation = new Core.Generation.GenerationOptions { MaxNewTokens = 6 };
        var fromAuto = await auto.GenerateAsync("question?", [a], generation);
        var fromExact = await exact.GenerateAsync("question?", [b], generation);
        Assert.NotEmpty(fromExact.TokenIds);
        Assert.Equal(fromExact.TokenIds[0], fromAuto.TokenIds[0]);
    }

    [Fact]
    public async Task An_engine_over_a_loaded_model_reports_the_models_dtype_and_an_explicit_dtype_is_reported_as_such()
    {
        await using var direct = fixture.Engine();
        Assert.Equal((ComputeDType.Float32, "model"), (direct.RuntimeInfo.ComputeDType, direct.RuntimeInfo.ComputeDTypeReason));
        Assert.Equal("cpu", direct.RuntimeInfo.Device);
        Assert.True(direct.RuntimeInfo.Threads >= 1);
        Assert.Contains($"tier {direct.RuntimeInfo.CpuTier}", direct.RuntimeInfo.ToString(), StringComparison.Ordinal);

        await using var bf16 = await KvLinkEngine.LoadAsync(fixture.Folder, new KvLinkOptions { LinkTokens = 1, PromptFormat = fixture.Format, DType = ComputeDType.BFloat16 });
        Assert.Equal((ComputeDType.BFloat16, "explicit"), (bf16.RuntimeInfo.ComputeDType, bf16.RuntimeInfo.ComputeDTypeReason));
        Assert.Equal(DecodeGemv.Vectorized(fixture.Model.Config.HiddenSize), bf16.RuntimeInfo.DecodeKernel.StartsWith("bf16 weights", StringComparison.Ordinal));
        Assert.Equal("LibTorch SDPA", bf16.RuntimeInfo.AttentionKernel); // the kernel is float32 only
    }

    [Fact]
    public async Task The_health_check_reports_the_tier_dtype_and_decode_kernel()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure);
        services.AddLogging().AddHealthChecks().AddKvLinkHealthCheck();
        await using var sp = services.BuildServiceProvider();
        foreach (var loader in sp.GetServices<IHostedService>().OfType<KvLinkEngineLoader>()) await loader.StartAsync(CancellationToken.None);
        var report = await sp.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        var data = report.Entries["kvlink"].Data;
        var info = sp.GetRequiredService<KvLinkEngine>().RuntimeInfo;
        Assert.Equal(CpuCapabilities.Current.Tier.Name(), data["cpu_tier"]);
        Assert.Equal(("Float32", "explicit", info.DecodeKernel), ((string)data["compute_dtype"], (string)data["compute_dtype_reason"], (string)data["decode_kernel"]));
        Assert.Equal(info.PromptKernel, (string)data["prompt_kernel"]);
        Assert.Equal(info.AttentionKernel, (string)data["attention_kernel"]);
    }
}
