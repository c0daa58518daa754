using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Rotary position embedding in the Hugging Face convention (<c>rotate_half</c>: dimension i pairs
/// with i + d/2), with optional llama3 frequency scaling. Angles and their cos/sin are computed in fp32.
/// </summary>
internal sealed class RotaryEmbedding
{
    private readonly float[] _invFreq;

    /// <summary>Creates the embedding for a head width, base and optional llama3 scaling.</summary>
    public RotaryEmbedding(int headDim, double theta, Llama3RopeScaling? scaling)
    {
        HeadDim = headDim;
        _invFreq = InverseFrequencies(headDim, theta, scaling);
    }

    /// <summary>Creates the embedding a model config describes.</summary>
    public RotaryEmbedding(LlamaConfig config) : this(config.HeadDim, config.RopeTheta, config.RopeScaling) { }

    /// <summary>Width of one head.</summary>
    public int HeadDim { get; }

    /// <summary>The d/2 inverse frequencies after scaling.</summary>
    public IReadOnlyList<float> InverseFrequency => _invFreq;

    /// <summary>
    /// inv_freq[i] = theta^(-2i/d), then llama3 scaling: long wavelengths are divided by the factor,
    /// short ones kept, and the band between blended smoothly.
    /// </summary>
    public static float[] InverseFrequencies(int headDim, double theta, Llama3RopeScaling? s)
    {
        var inv = new float[headDim / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            // HF computes the exponent in fp32 (arange(0, d, 2).float() / d) and the power in fp32.
            float exponent = (float)(2 * i) / headDim;
            double f = 1.0 / Math.Pow(theta, exponent);
            if (s is not null)
            {
                double wavelen = 2 * Math.PI / f;
                double lowWavelen = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
                double highWavelen = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
                if (wavelen > lowWavelen) f /= s.Factor;
                else if (wavelen >= highWavelen)
                {
                    double smooth = (s.OriginalMaxPositionEmbeddings / wavelen - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    f = (1 - smooth) * f / s.Factor + smooth * f;
                }
            }
            inv[i] = (float)f;
        }
        return inv;
    }

    /// <summary>
    /// cos and sin of <c>p * concat(inv_freq, inv_freq)</c> for each position, shape [T, d], fp32.
    /// Positions may be any (also negative) integers: a negative position rotates backwards.
    /// </summary>
    public (Tensor Cos, Tensor Sin) Angles(Tensor positions)
    {
        using var scope = NewDisposeScope();
        var inv = tensor(_invFreq, device: positions.device);
        var angle = positions.to(ScalarType.Float32).unsqueeze(-1) * inv;   // [T, d/2]
        var emb = cat([angle, angle], -1);                                 // [T, d]
        return (emb.cos().MoveToOuterDisposeScope(), emb.sin().MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Rotates <paramref name="x"/> ([..., T, d]) by the angles of its positions:
    /// <c>x*cos + rotate_half(x)*sin</c>, computed in fp32 and returned in x's dtype.
    /// </summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var xf = x.to(ScalarType.Float32);
        var rotated = (xf * cos).add(RotateHalf(xf) * sin, HeldScalars.One);
        return rotated.to(x.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>concat(-x[d/2:], x[:d/2]) along the last dimension.</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        using var scope = NewDisposeScope();
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        return cat([x2.neg(), x1], -1).MoveToOuterDisposeScope();
    }
}
