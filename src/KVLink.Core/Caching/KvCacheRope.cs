using System.Globalization;
using KVLink.Core.Model;

namespace KVLink.Core.Caching;

/// <summary>
/// The rotary embedding the stored keys were rotated with (Hugging Face rotate_half convention). Stored with
/// every entry so a file describes itself, and needed to quantise keys before RoPE.
/// </summary>
/// <param name="HeadDim">Width of one head.</param>
/// <param name="Theta">RoPE base.</param>
/// <param name="Scaling">llama3 frequency scaling, or null.</param>
internal sealed record KvCacheRope(int HeadDim, double Theta, Llama3RopeScaling? Scaling)
{
    /// <summary>The settings of a model config.</summary>
    public static KvCacheRope FromConfig(LlamaConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new(config.HeadDim, config.RopeTheta, config.RopeScaling);
    }

    /// <summary>The embedding these settings describe.</summary>
    public RotaryEmbedding ToRotaryEmbedding() => new(HeadDim, Theta, Scaling);

    /// <summary>Canonical text form, e.g. <c>hf-rotate-half;head_dim=64;theta=500000;llama3=32,1,4,8192</c>.</summary>
    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        string s = string.Create(c, $"hf-rotate-half;head_dim={HeadDim};theta={Theta:R}");
        return Scaling is null ? s : s + string.Create(c, $";llama3={Scaling.Factor:R},{Scaling.LowFreqFactor:R},{Scaling.HighFreqFactor:R},{Scaling.OriginalMaxPositionEmbeddings}");
    }

    /// <summary>Parses <see cref="ToString"/>'s form; false for anything else.</summary>
    public static bool TryParse(string? text, out KvCacheRope? rope)
    {
        rope = null;
        if (text is null) return false;
        var parts = text.Split(';');
        if (parts.Length is < 3 or > 4 || parts[0] != "hf-rotate-half") return false;
        var c = CultureInfo.InvariantCulture;
        if (!parts[1].StartsWith("head_dim=", StringComparison.Ordinal) || !int.TryParse(parts[1].AsSpan(9), NumberStyles.None, c, out int dim) || dim <= 0 || dim % 2 != 0 || dim > 65536) return false;
        if (!parts[2].StartsWith("theta=", StringComparison.Ordinal) || !double.TryParse(parts[2].AsSpan(6), NumberStyles.Float, c, out double theta) || !(theta > 1) || double.IsInfinity(theta)) return false;
        Llama3RopeScaling? scaling = null;
        if (parts.Length == 4)
        {
            if (!parts[3].StartsWith("llama3=", StringComparison.Ordinal)) return false;
            var v = parts[3][7..].Split(',');
            if (v.Length != 4
                || !double.TryParse(v[0], NumberStyles.Float, c, out double f) || !double.TryParse(v[1], NumberStyles.Float, c, out double lo)
                || !double.TryParse(v[2], NumberStyles.Float, c, out double hi) || !int.TryParse(v[3], NumberStyles.None, c, out int orig)
                || !(f > 0) || !(lo > 0) || !(hi > lo) || orig <= 0 || double.IsInfinity(f) || double.IsInfinity(hi)) return false;
            scaling = new Llama3RopeScaling(f, lo, hi, orig);
        }
        rope = new KvCacheRope(dim, theta, scaling);
        return true;
    }
}
