using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Which token rows of a forward step are decoding rows: one token per decoding sequence, which a batched step puts
/// first, before prompt chunks. The step carries it (<see cref="ForwardStep.Decode"/>) to every projection. Only those rows go through the bandwidth kernels of
/// <see cref="DecodeGemv"/> (bf16 weights read in place, or the int8 copies where the step allows them); prompts,
/// documents and link passes keep the compute dtype's GEMMs (LibTorch's, or <see cref="SmallRowsGemm"/> for float32 at a few
/// dozen rows), even when they are one token long or share a step with decoding rows,
/// so a token's numbers never depend on which prompts shared its step. (With bf16 weights the number of decoding rows
/// picks the product, <see cref="Bf16KernelMaxRows"/>, so there a token's last bits may depend on how many requests
/// decoded with it, as they could with LibTorch's GEMM alone, which picks its kernel by row count.)
/// </summary>
/// <param name="Count">How many leading token rows decode (0: none, the default, for prompts, documents and training).</param>
/// <param name="Int8">Whether they use int8 weight copies where a projection has them.</param>
internal readonly record struct DecodeRows(int Count, bool Int8)
{
    /// <summary>Every row of the step decodes (one sequence's decode step).</summary>
    public static DecodeRows All(bool int8 = true) => new(int.MaxValue, int8);

    /// <summary>
    /// The most decoding rows a step multiplies with bf16 weights through <see cref="DecodeGemv"/>; more go through
    /// LibTorch's GEMM. The kernel reads the weights faster but computes in float32 FMAs, while LibTorch's bf16 GEMM
    /// computes on the CPU's matrix units: <c>--decode-products</c> on the 1B shape (2 cores, AMX) timed a whole step's
    /// products at 0.74x LibTorch's at 1 row, 0.84x at 2 and at 4, 1.26x at 8 and 2.19x at 16 (median of 9 rounds).
    /// </summary>
    public const int Bf16KernelMaxRows = 4;

    /// <summary>
    /// How many leading token rows of <paramref name="x"/> ([..., <paramref name="cols"/>]) are decoding rows: on the CPU,
    /// without autograd; 0 outside a decode step.
    /// </summary>
    public long Served(Tensor x, long cols)
    {
        if (Count == 0 || x.device_type != TorchSharp.DeviceType.CPU || (is_grad_enabled() && x.requires_grad)) return 0;
        return Math.Min(Count, x.numel() / cols);
    }

    /// <summary>
    /// y = x W[first..first+count)^T for a projection's <paramref name="weight"/> ([out, in]): the decoding rows through
    /// the projection's int8 copy where the step allows it (<see cref="Int8"/>), else straight from a bf16 weight through
    /// <see cref="DecodeGemv"/>; every other row, and weights of other dtypes, through <paramref name="full"/> (LibTorch).
    /// </summary>
    public Tensor Product(Tensor x, Tensor weight, Int8Weight? int8, long first, long count, Func<Tensor, Tensor> full)
    {
        if (Count == 0) return full(x);
        if (int8 is not null && Int8) return int8.Forward(x, this, first, count, full);
        long cols = weight.shape[1];
        if (Served(x, cols) > Bf16KernelMaxRows) return full(x);
        // The kernel reads the weight where LibTorch keeps it: one contiguous CPU block (a span, so under 2 GiB).
        if (weight.dtype != ScalarType.BFloat16 || weight.device_type != TorchSharp.DeviceType.CPU || !DecodeGemv.Vectorized(cols)
            || !weight.is_contiguous() || weight.numel() * 2 > int.MaxValue) return full(x);
        return Split(x, cols, count, rows => Bf16(rows, weight, first, count), full);
    }

    private static unsafe Tensor Bf16(Tensor x, Tensor weight, long first, long count)
    {
        fixed (byte* w = weight.bytes) return DecodeGemv.Multiply<Bf16Format>(w, null, weight.shape[1], x, first, count);
    }

    /// <summary>
    /// y = x W^T for <paramref name="count"/> output features: the <see cref="Served"/> leading rows through
    /// <paramref name="kernel"/>, the rest through <paramref name="full"/>; returns [..., count] in x's dtype.
    /// </summary>
    public Tensor Split(Tensor x, long cols, long count, Func<Tensor, Tensor> kernel, Func<Tensor, Tensor> full)
    {
        long served = Served(x, cols), rows = x.numel() / cols;
        if (served == 0) return full(x);
        if (served == rows) return kernel(x);
        using var flat = x.reshape(rows, cols);
        using var head = flat.narrow(0, 0, served);
        using var tail = flat.narrow(0, served, rows - served);
        using var a = kernel(head);
        using var b = full(tail);
        using var y = cat([a, b], 0);
        return y.reshape([.. x.shape[..^1], count]);
    }
}
