using KVLink.TestSupport;
using KVLink.Core.Cuda;
using KVLink.Core.Engine;
using KVLink.Core.Hosting;
using Microsoft.Extensions.DependencyInjection;

namespace KVLink.Core.Tests.Hosting;

/// <summary>The CPU-side behaviour of KVLink.Core.Cuda: defaults, fallback and the missing-runtime error.</summary>
public sealed class CudaOptionsTests(CheckpointFixture fixture) : IClassFixture<CheckpointFixture>
{
    [Fact]
    public void UseCuda_sets_device_bf16_and_pinned_staging()
    {
        var o = new KvLinkOptions { DType = ComputeDType.Float32 }.UseCuda(c => c.DeviceIndex = 1);
        Assert.Equal("cuda:1", o.Device);
        Assert.Equal(ComputeDType.BFloat16, o.DType);
        Assert.IsType<PinnedHostStagingTransfer>(o.CacheTransfer?.Target);
        o.Validate();

        var keep = new KvLinkOptions { DType = ComputeDType.Float16 }.UseCuda(c => { c.BFloat16 = false; c.PinnedHostStaging = false; });
        Assert.Equal(("cuda:0", ComputeDType.Float16), (keep.Device, keep.DType));
        Assert.Null(keep.CacheTransfer);

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new KvLinkOptions().UseCuda(c => c.DeviceIndex = -1));
        Assert.Equal("DeviceIndex", e.ParamName);
    }

    [CpuOnlyFact]
    public async Task Without_a_cuda_runtime_loading_names_the_package_to_add()
    {
        Assert.Equal(0, CudaDevice.DeviceCount);
        var ensure = Assert.Throws<InvalidOperationException>(() => CudaDevice.EnsureAvailable());
        Assert.Contains("TorchSharp-cuda-linux", ensure.Message);
        Assert.Contains("TorchSharp-cuda-windows", ensure.Message);

        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure).UseCuda();
        await using var sp = services.BuildServiceProvider();
        var load = Assert.Throws<InvalidOperationException>(() => sp.GetRequiredService<KvLinkEngine>());
        Assert.Contains("TorchSharp-cuda-linux", load.Message);
        Assert.Contains("TorchSharp-cuda-windows", load.Message);
    }

    [CpuOnlyFact]
    public async Task FallbackToCpu_runs_on_the_cpu_when_no_runtime_is_present()
    {
        var services = new ServiceCollection();
        services.AddKvLink(fixture.Configure).UseCuda(c => c.FallbackToCpu = true);
        await using var sp = services.BuildServiceProvider();
        var engine = sp.GetRequiredService<KvLinkEngine>();
        Assert.Equal("cpu", engine.Options.Device);
        Assert.Null(engine.Options.CacheTransfer);
        Assert.Equal(TorchSharp.DeviceType.CPU, engine.Model.Device.type);
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(1));
        var fallback = await engine.GenerateAsync("q?", [id]);

        // The fallback engine really generates: the same greedy tokens as an engine configured for the CPU directly.
        await using var cpu = await fixture.LoadEngineAsync();
        var direct = await cpu.GenerateAsync("q?", [await cpu.PrecomputeAsync(CheckpointFixture.Doc(1))]);
        Assert.NotEmpty(fallback.TokenIds);
        Assert.Equal(direct.TokenIds, fallback.TokenIds);
        Assert.Equal(direct.Text, fallback.Text);
    }

    [Fact]
    public void Pinned_staging_passes_cpu_targets_through()
    {
        using var keys = TorchSharp.torch.zeros(1, 1, 2, 4);
        using var values = TorchSharp.torch.ones(1, 1, 2, 4);
        using var entry = new KVLink.Core.Caching.DocumentKvCache("d", 0, [1, 2], keys.alias(), values.alias(), "m", "f", null, "t");
        var (k, v) = new PinnedHostStagingTransfer().ToDevice(entry, TorchSharp.torch.CPU);
        Assert.Same(entry.Keys, k);
        Assert.Same(entry.Values, v);
    }
}

/// <summary>A fact that needs a machine without a CUDA runtime; on a GPU machine it is reported as skipped, not passed.</summary>
public sealed class CpuOnlyFactAttribute : FactAttribute
{
    public CpuOnlyFactAttribute()
    {
        if (CudaDevice.IsAvailable) Skip = "A CUDA runtime is present: this checks the CPU-only behaviour (the missing-runtime error and the CPU fallback).";
    }
}
