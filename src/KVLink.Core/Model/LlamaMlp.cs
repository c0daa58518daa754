using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>The SwiGLU feed-forward block: <c>down(silu(gate(x)) * up(x))</c>, gate and up as one GEMM.</summary>
internal sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    private readonly Projection gate_proj, up_proj, down_proj;
    private readonly FusedProjections _gateUp;

    /// <summary>Creates the block for a config.</summary>
    public LlamaMlp(LlamaConfig c, ScalarType dtype, Device device) : base("mlp")
    {
        _gateUp = new FusedProjections(["gate_proj", "up_proj"], c.HiddenSize, [c.IntermediateSize, c.IntermediateSize], dtype, device);
        (gate_proj, up_proj) = (_gateUp.Parts[0], _gateUp.Parts[1]);
        down_proj = new Projection("down_proj", c.IntermediateSize, c.HiddenSize, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => Forward(x, default);

    /// <summary>The block over a step's rows, its <paramref name="decode"/> rows through the decode kernel.</summary>
    public Tensor Forward(Tensor x, DecodeRows decode)
    {
        using var scope = NewDisposeScope();
        var gateUp = _gateUp.Forward(x, decode);
        // One temporary for the activation: silu(gate) is multiplied by up in place (out of place while
        // training, where autograd needs the activation as it was).
        var act = nn.functional.silu(gateUp[0]);
        var h = is_grad_enabled() ? act * gateUp[1] : act.mul_(gateUp[1]);
        return down_proj.Forward(h, decode).MoveToOuterDisposeScope();
    }

    /// <summary>Adds int8 copies of the projections for single-token inputs; returns their bytes.</summary>
    public long QuantizeInt8()
    {
        _gateUp.QuantizeInt8();
        down_proj.QuantizeInt8();
        return _gateUp.Int8!.Bytes + down_proj.Int8!.Bytes;
    }

    /// <summary>Adds bf16 copies of float32 projections for decoding rows; returns their bytes.</summary>
    public long KeepBf16ForDecoding() => _gateUp.KeepBf16ForDecoding() + down_proj.KeepBf16ForDecoding();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _gateUp.Dispose();
        base.Dispose(disposing);
    }
}
