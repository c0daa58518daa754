using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace KVLink.Core.Model;

/// <summary>
/// A bias-free linear layer whose weight is allocated but not initialised: every weight of a
/// checkpoint model is overwritten at load, so random initialisation would only cost time.
/// The parameter is named <c>weight</c>, as in Hugging Face state dicts.
/// </summary>
internal sealed class Projection : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    /// <summary>Creates an <paramref name="outFeatures"/> x <paramref name="inFeatures"/> projection.</summary>
    public Projection(string name, long inFeatures, long outFeatures, ScalarType dtype, Device device) : base(name)
    {
        weight = new Parameter(empty([outFeatures, inFeatures], dtype, device), requires_grad: false);
        RegisterComponents();
    }

    /// <summary>Creates a projection that shares an existing weight (tied embeddings).</summary>
    public Projection(string name, Parameter shared) : base(name)
    {
        weight = shared;
        RegisterComponents();
    }

    /// <summary>The [out, in] weight matrix.</summary>
    public Parameter Weight => weight;

    /// <summary>The weight-only int8 copy decode steps use (null: bf16 only); see <see cref="QuantizeInt8"/>.</summary>
    public Int8Weight? Int8 { get; private set; }

    /// <summary>
    /// Adds an int8 copy of the weight (per output channel) that decode steps' tokens multiply with (<see cref="DecodeRows"/>); other
    /// inputs keep the full-precision weight. A snapshot: later writes to the weight do not reach it.
    /// </summary>
    public void QuantizeInt8() => Int8 ??= Int8Weight.Quantize(weight);

    /// <summary>The bf16 copy of a float32 weight that decode steps' tokens read (null: they read the weight itself); see <see cref="KeepBf16ForDecoding"/>.</summary>
    public Tensor? Bf16 { get; private set; }

    /// <summary>
    /// Adds a bf16 copy of a float32 weight that decode steps' tokens multiply with (<see cref="DecodeRows"/>): decoding is
    /// bound by the bytes of weights read, so float32 compute still reads half-size weights there, while prompts keep the
    /// float32 GEMM. A snapshot, like <see cref="QuantizeInt8"/>. Returns the copy's bytes (0 for a weight of another dtype).
    /// </summary>
    public long KeepBf16ForDecoding()
    {
        if (weight.dtype != ScalarType.Float32) return 0;
        Bf16 ??= DecodeCopies.Bf16Of(weight);
        return Bf16.numel() * 2;
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => Forward(x, default);

    /// <summary>y = x W^T, the step's <paramref name="decode"/> rows through the decode kernel.</summary>
    public Tensor Forward(Tensor x, DecodeRows decode)
        => decode.Product(x, Bf16 ?? weight, Int8, 0, weight.shape[0], xs => SmallRowsGemm.Linear(xs, weight));

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) Bf16?.Dispose();
        base.Dispose(disposing);
    }
}
