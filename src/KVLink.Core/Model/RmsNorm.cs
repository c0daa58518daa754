using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace KVLink.Core.Model;

/// <summary>RMSNorm as Llama defines it: normalise in fp32, cast back, then scale by the weight.</summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    // Held for the module's life: a temporary Scalar can be finalized while LibTorch reads it (see HeldScalars).
    private readonly Scalar _eps;

    /// <summary>Creates a norm over the last dimension of width <paramref name="size"/>.</summary>
    public RmsNorm(string name, long size, double eps, ScalarType dtype, Device device) : base(name)
    {
        weight = new Parameter(ones([size], dtype, device), requires_grad: false);
        _eps = eps.ToScalar();
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var normed = xf * xf.pow(HeldScalars.Two).mean([-1L], keepdim: true).add(_eps, HeldScalars.One).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) _eps.Dispose();
        base.Dispose(disposing);
    }
}
