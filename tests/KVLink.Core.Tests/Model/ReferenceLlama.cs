using KVLink.Core.Model;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// An independent Llama forward in double precision with plain loops: shares no code with the
/// TorchSharp model (its own RoPE frequencies, attention, norms), so agreement means both are right.
/// </summary>
internal sealed class ReferenceLlama(LlamaConfig c, IReadOnlyDictionary<string, double[]> w)
{
    /// <summary>Logits [T, vocab] of a causal forward over tokens at positions 0..T-1, or with a custom visibility rule.</summary>
    public double[][] Forward(int[] tokens, Func<int, int, bool>? visible = null, long[]? positions = null)
    {
        visible ??= (q, k) => k <= q;
        positions ??= [.. Enumerable.Range(0, tokens.Length).Select(i => (long)i)];
        int t = tokens.Length, h = c.HiddenSize, d = c.HeadDim, nh = c.NumAttentionHeads, nkv = c.NumKeyValueHeads;
        var x = new double[t][];
        for (int i = 0; i < t; i++) x[i] = Row(w["model.embed_tokens.weight"], tokens[i], h);

        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var xn = x.Select(r => RmsNorm(r, w[p + "input_layernorm.weight"])).ToArray();
            var q = xn.Select(r => MatVec(w[p + "self_attn.q_proj.weight"], r, nh * d)).ToArray();
            var k = xn.Select(r => MatVec(w[p + "self_attn.k_proj.weight"], r, nkv * d)).ToArray();
            var v = xn.Select(r => MatVec(w[p + "self_attn.v_proj.weight"], r, nkv * d)).ToArray();
            for (int i = 0; i < t; i++)
            {
                for (int hh = 0; hh < nh; hh++) Rope(q[i], hh * d, positions[i]);
                for (int hh = 0; hh < nkv; hh++) Rope(k[i], hh * d, positions[i]);
            }
            var attn = new double[t][];
            for (int i = 0; i < t; i++)
            {
                attn[i] = new double[nh * d];
                for (int hh = 0; hh < nh; hh++)
                {
                    int kvh = hh / (nh / nkv);
                    var scores = new double[t];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < t; j++)
                    {
                        if (!visible(i, j)) { scores[j] = double.NegativeInfinity; continue; }
                        double s = 0;
                        for (int e = 0; e < d; e++) s += q[i][hh * d + e] * k[j][kvh * d + e];
                        scores[j] = s / Math.Sqrt(d);
                        max = Math.Max(max, scores[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < t; j++) { scores[j] = double.IsNegativeInfinity(scores[j]) ? 0 : Math.Exp(scores[j] - max); sum += scores[j]; }
                    for (int j = 0; j < t; j++)
                        for (int e = 0; e < d; e++) attn[i][hh * d + e] += scores[j] / sum * v[j][kvh * d + e];
                }
            }
            for (int i = 0; i < t; i++)
            {
                var o = MatVec(w[p + "self_attn.o_proj.weight"], attn[i], h);
                for (int e = 0; e < h; e++) x[i][e] += o[e];
                var hn = RmsNorm(x[i], w[p + "post_attention_layernorm.weight"]);
                var gate = MatVec(w[p + "mlp.gate_proj.weight"], hn, c.IntermediateSize);
                var up = MatVec(w[p + "mlp.up_proj.weight"], hn, c.IntermediateSize);
                var act = new double[c.IntermediateSize];
                for (int e = 0; e < act.Length; e++) act[e] = gate[e] / (1 + Math.Exp(-gate[e])) * up[e];
                var down = MatVec(w[p + "mlp.down_proj.weight"], act, h);
                for (int e = 0; e < h; e++) x[i][e] += down[e];
            }
        }
        var head = w.TryGetValue("lm_head.weight", out var lm) ? lm : w["model.embed_tokens.weight"];
        return x.Select(r => MatVec(head, RmsNorm(r, w["model.norm.weight"]), c.VocabSize)).ToArray();
    }

    private double[] RmsNorm(double[] x, double[] g)
    {
        double ms = x.Sum(e => e * e) / x.Length;
        double inv = 1 / Math.Sqrt(ms + c.RmsNormEps);
        return x.Select((e, i) => e * inv * g[i]).ToArray();
    }

    /// <summary>Rotates one head (offset o) by position p; pairs (i, i + d/2) as Hugging Face does.</summary>
    private void Rope(double[] v, int o, long p)
    {
        int d = c.HeadDim, half = d / 2;
        for (int i = 0; i < half; i++)
        {
            double freq = Frequency(i);
            double a = p * freq, cos = Math.Cos(a), sin = Math.Sin(a);
            double x1 = v[o + i], x2 = v[o + i + half];
            v[o + i] = x1 * cos - x2 * sin;
            v[o + i + half] = x2 * cos + x1 * sin;
        }
    }

    private double Frequency(int i)
    {
        double f = Math.Pow(c.RopeTheta, -2.0 * i / c.HeadDim);
        if (c.RopeScaling is not { } s) return f;
        double wave = 2 * Math.PI / f;
        if (wave < s.OriginalMaxPositionEmbeddings / s.HighFreqFactor) return f;
        if (wave > s.OriginalMaxPositionEmbeddings / s.LowFreqFactor) return f / s.Factor;
        double smooth = (s.OriginalMaxPositionEmbeddings / wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (1 - smooth) * f / s.Factor + smooth * f;
    }

    private static double[] Row(double[] m, int r, int cols) => m.AsSpan(r * cols, cols).ToArray();

    private static double[] MatVec(double[] m, double[] x, int rows)
    {
        var y = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double s = 0;
            for (int e = 0; e < x.Length; e++) s += m[r * x.Length + e] * x[e];
            y[r] = s;
        }
        return y;
    }
}
