using TorchSharp;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace KVLink.Core.Model;

/// <summary>The token embedding table (<c>embed_tokens.weight</c>, [vocab, hidden]), uninitialised until loaded.</summary>
internal sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    /// <summary>Creates a [vocab, hidden] table.</summary>
    public TokenEmbedding(long vocab, long hidden, ScalarType dtype, Device device) : base("embed_tokens")
    {
        weight = new Parameter(empty([vocab, hidden], dtype, device), requires_grad: false);
        RegisterComponents();
    }

    /// <summary>The [vocab, hidden] matrix.</summary>
    public Parameter Weight => weight;

    /// <summary>Looks up ids of any shape; the result gains a trailing hidden dimension.</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var flat = weight.index_select(0, ids.flatten());
        long[] shape = [.. ids.shape, weight.shape[1]];
        return flat.view(shape).MoveToOuterDisposeScope();
    }
}
