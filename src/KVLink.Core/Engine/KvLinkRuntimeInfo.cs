using System.Globalization;
using KVLink.Core.Model;
using KVLink.Core.Native;

namespace KVLink.Core.Engine;

/// <summary>
/// What an engine computes with, detected once at load: the CPU and its tier, what LibTorch uses on it, the compute dtype
/// and why, and the decode kernel. Logged once when the engine is ready (like llama.cpp's system-info line), in the health
/// check's data, and here for hosts' own diagnostics. docs/architecture.md names the tiers.
/// </summary>
public sealed class KvLinkRuntimeInfo
{
    internal KvLinkRuntimeInfo(CpuCapabilities cpu, LibTorchCpuInfo libTorch, ComputeDType dtype, string dtypeReason, string decodeKernel, int threads, string device,
        string batchedSteps, string promptKernel, string attentionKernel)
    {
        (CpuModel, CpuTier, LibTorchCpuCapability, OneDnnIsa) = (cpu.Model, cpu.Tier.Name(), libTorch.Aten, libTorch.OneDnn);
        (ComputeDType, ComputeDTypeReason, DecodeKernel, Threads, Device, BatchedSteps) = (dtype, dtypeReason, decodeKernel, threads, device, batchedSteps);
        PromptKernel = promptKernel;
        AttentionKernel = attentionKernel;
    }

    /// <summary>The CPU's model name, e.g. "AMD EPYC 9R14" (/proc/cpuinfo on Linux).</summary>
    public string CpuModel { get; }

    /// <summary>
    /// The CPU tier in .NET's view: "AMX", "AVX-512 BF16", "AVX-512F", "AVX2+FMA", "ARM64 AdvSimd+BF16", "ARM64 AdvSimd" or
    /// "baseline". <c>DOTNET_EnableAVX512=0</c> lowers an AVX-512 machine to "AVX2+FMA".
    /// </summary>
    public string CpuTier { get; }

    /// <summary>ATen's CPU capability (its own vector kernels: "AVX512", "AVX2", "DEFAULT"), or its override where it cannot be read.</summary>
    public string LibTorchCpuCapability { get; }

    /// <summary>oneDNN's ISA cap (bf16 GEMMs): the <c>ONEDNN_MAX_CPU_ISA</c> override, or "max" when none is set (oneDNN does not report its choice).</summary>
    public string OneDnnIsa { get; }

    /// <summary>The compute dtype the model runs in (never <see cref="ComputeDType.Auto"/>).</summary>
    public ComputeDType ComputeDType { get; }

    /// <summary>
    /// Why: "explicit" (the option), "model" (an engine over a model loaded elsewhere), "table: ..." (the tier decides),
    /// "measured: ..." or "cached: ..." (the calibration GEMMs of <see cref="ComputeDType.Auto"/>, with their rates).
    /// </summary>
    public string ComputeDTypeReason { get; }

    /// <summary>What decoding rows multiply with, e.g. "bf16 weights, Vector512 (AVX-512F)", "int8 weights, ...", "LibTorch GEMM".</summary>
    public string DecodeKernel { get; }

    /// <summary>
    /// What prompt, document and link rows multiply with: "LibTorch GEMM", or for float32 weights on a CPU with a vector
    /// kernel and weights of 1 MB or more, e.g. "Vector256 (AVX2+FMA) kernel at 8-256 rows (weights of 1 MB and more), LibTorch
    /// GEMM beyond" (a link pass computes a few dozen rows, where MKL's float32 GEMM is slow).
    /// </summary>
    public string PromptKernel { get; }

    /// <summary>
    /// What a link pass's attention runs on: "LibTorch SDPA", or for a float32 CPU model with a vector kernel, e.g. "Vector256
    /// (AVX2+FMA) kernel at 4-256 folded rows over 1,024-32,768 keys, LibTorch SDPA beyond" (a few dozen tokens attending to
    /// thousands of cached positions, where SDPA's float32 path is slower).
    /// </summary>
    public string AttentionKernel { get; }

    /// <summary>LibTorch's intra-op threads.</summary>
    public int Threads { get; }

    /// <summary>The model's device ("cpu", "cuda:0").</summary>
    public string Device { get; }

    /// <summary>
    /// How a step of several sequences runs: "groups side by side on N threads" (each group's forward on one OpenMP thread,
    /// where its sequences divide evenly), or "one forward" over all threads (and why, where groups are not available).
    /// </summary>
    public string BatchedSteps { get; }

    /// <summary>The one-line summary the engine logs at load.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"CPU {CpuModel} | tier {CpuTier} | LibTorch ATen {LibTorchCpuCapability}, oneDNN {OneDnnIsa}, {Threads} threads | device {Device} | dtype {ComputeDType} ({ComputeDTypeReason}) | prompt rows {PromptKernel} | attention {AttentionKernel} | decode {DecodeKernel} | batched steps {BatchedSteps}");

    /// <summary>The runtime info of an engine over <paramref name="model"/>.</summary>
    internal static KvLinkRuntimeInfo Of(LlamaForCausalLM model, ComputeDTypeChoice choice, bool int8Decoding, bool bf16DecodeCopies, bool groupSteps)
    {
        bool cpu = model.Device.type == TorchSharp.DeviceType.CPU;
        bool vector = DecodeGemv.Vectorized(model.Config.HiddenSize);
        // The one place that names the decode kernel.
        string kernel = vector ? DecodeGemv.KernelName : "scalar";
        string decode = !cpu ? "LibTorch GEMM"
            : int8Decoding ? $"int8 weights, {kernel}"
            : model.DType == TorchSharp.torch.ScalarType.BFloat16 && vector ? $"bf16 weights, {kernel}"
            : bf16DecodeCopies && vector ? $"bf16 copies of float32 weights, {kernel}"
            : $"LibTorch GEMM ({model.DType} weights)";
        int threads = TorchSharp.torch.get_num_threads();
        string steps = !groupSteps ? "one forward (groups off)"
            : StepGroups.Available(model.Device) ? $"groups side by side on {threads} threads where they divide evenly"
            : !cpu ? "one forward (not a CPU)" : !OpenMpTeam.Available ? "one forward (LibTorch's OpenMP runtime not found)" : "one forward (1 thread)";
        string prompt = cpu && model.DType == TorchSharp.torch.ScalarType.Float32 && vector && SmallRowsGemm.TakesWeightsOf(model.Config)
            ? $"{kernel} kernel at {SmallRowsGemm.MinRows}-{SmallRowsGemm.MaxRows} rows (weights of 1 MB and more), LibTorch GEMM beyond" : "LibTorch GEMM";
        string attention = cpu && model.DType == TorchSharp.torch.ScalarType.Float32 && SmallRowsAttention.TakesHeadsOf(model.Config)
            ? $"{kernel} kernel at {SmallRowsAttention.MinRows}-{SmallRowsAttention.MaxRows} folded rows over {SmallRowsAttention.MinKeys:N0}-{SmallRowsAttention.MaxKeys:N0} keys, LibTorch SDPA beyond"
            : "LibTorch SDPA";
        return new KvLinkRuntimeInfo(CpuCapabilities.Current, LibTorchCpuInfo.Current, choice.DType, choice.Reason, decode, threads, model.Device.ToString(), steps, prompt, attention);
    }
}
