using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace KVLink.Core.Model;

/// <summary>
/// Bias-free projections of one input (q/k/v, or gate/up) stored as row blocks of a single [sum(out), in] weight,
/// so inference runs them as one GEMM: the input is read once and one larger kernel replaces several small ones,
/// which matters most at the small token counts of a link pass and of decoding.
/// </summary>
/// <remarks>
/// Each part is a <see cref="Projection"/> whose <c>weight</c> is a view of its block, so parameter names and shapes,
/// checkpoint loading (an in-place copy into each view), saving and the fingerprint are exactly those of separate
/// projections. Not a module and holding the fused tensor in a non-tensor field keeps it out of the state dict.
/// While gradients are wanted (training) the parts run one by one, so autograd reaches each parameter.
/// </remarks>
internal sealed class FusedProjections : IDisposable
{
    private readonly Tensor _weight;
    private readonly long[] _offsets, _sizes;

    /// <summary>Allocates (uninitialised) the fused weight of parts with <paramref name="outFeatures"/> rows each.</summary>
    public FusedProjections(string[] names, long inFeatures, long[] outFeatures, ScalarType dtype, Device device)
    {
        if (names.Length != outFeatures.Length) throw new ArgumentException("One name per part is needed.", nameof(names));
        _sizes = outFeatures;
        _offsets = new long[outFeatures.Length];
        for (int i = 1; i < outFeatures.Length; i++) _offsets[i] = _offsets[i - 1] + outFeatures[i - 1];
        _weight = empty([_offsets[^1] + outFeatures[^1], inFeatures], dtype, device);
        Parts = [.. names.Select((n, i) => new Projection(n, new Parameter(_weight.narrow(0, _offsets[i], _sizes[i]), requires_grad: false)))];
    }

    /// <summary>The parts, in order; register them as the owning module's fields.</summary>
    public Projection[] Parts { get; }

    /// <summary>The [sum(out), in] weight the parts are views of.</summary>
    public Tensor Weight => _weight;

    /// <summary>The weight-only int8 copy of the fused weight decode steps use (null: none).</summary>
    public Int8Weight? Int8 { get; private set; }

    /// <summary>Adds an int8 copy of the fused weight for decode steps (<see cref="Projection.QuantizeInt8"/>).</summary>
    public void QuantizeInt8() => Int8 ??= Int8Weight.Quantize(_weight);

    /// <summary>The bf16 copy of a float32 fused weight decode steps read (null: none); see <see cref="Projection.KeepBf16ForDecoding"/>.</summary>
    public Tensor? Bf16 { get; private set; }

    /// <summary>Adds a bf16 copy of a float32 fused weight for decode steps (<see cref="Projection.KeepBf16ForDecoding"/>); returns its bytes.</summary>
    public long KeepBf16ForDecoding()
    {
        if (_weight.dtype != ScalarType.Float32) return 0;
        Bf16 ??= DecodeCopies.Bf16Of(_weight);
        return Bf16.numel() * 2;
    }

    /// <summary>Whether the fused GEMM may be used: not while autograd must reach the parts' parameters.</summary>
    private bool Fused => !(is_grad_enabled() && Parts.Any(p => p.Weight.requires_grad));

    /// <summary>
    /// The outputs of parts [<paramref name="first"/>, <paramref name="first"/>+<paramref name="count"/>) for input x ([..., in]);
    /// fused they are views along the last axis of one result.
    /// </summary>
    public Tensor[] Forward(Tensor x, DecodeRows decode, int first = 0, int count = -1)
    {
        if (count < 0) count = Parts.Length - first;
        if (!Fused) return [.. Enumerable.Range(first, count).Select(i => Parts[i].Forward(x, decode))];
        long start = _offsets[first], rows = _offsets[first + count - 1] + _sizes[first + count - 1] - start;
        Tensor Full(Tensor xs) => SmallRowsGemm.Linear(xs, _weight, start, rows);
        var y = decode.Product(x, Bf16 ?? _weight, Int8, start, rows, Full);
        var parts = new Tensor[count];
        for (int i = 0; i < count; i++) parts[i] = y.narrow(-1, _offsets[first + i] - start, _sizes[first + i]);
        return parts;
    }

    /// <summary>Releases the fused weight and its bf16 copy (the parts' views are released by their modules).</summary>
    public void Dispose()
    {
        _weight.Dispose();
        Bf16?.Dispose();
    }
}
