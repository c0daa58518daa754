using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>The SwiGLU feed-forward block: <c>down(silu(gate(x)) * up(x))</c>.</summary>
internal sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    private readonly Projection gate_proj, up_proj, down_proj;

    /// <summary>Creates the block for a config.</summary>
    public LlamaMlp(LlamaConfig c, ScalarType dtype, Device device) : base("mlp")
    {
        gate_proj = new Projection("gate_proj", c.HiddenSize, c.IntermediateSize, dtype, device);
        up_proj = new Projection("up_proj", c.HiddenSize, c.IntermediateSize, dtype, device);
        down_proj = new Projection("down_proj", c.IntermediateSize, c.HiddenSize, dtype, device);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return down_proj.call(nn.functional.silu(gate_proj.call(x)) * up_proj.call(x)).MoveToOuterDisposeScope();
    }
}
