using System.Diagnostics;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// <c>--gemm-rates</c> (and part of every suite run, in the run's compute dtype): bf16 GEMM rates of the 1B shape's projections at T = 1, 16, 64,
/// 96, 256 and 1024 rows, each projection separately (before fusion) and fused (q/k/v as one 2048→3072 GEMM, gate/up
/// as one 2048→16384), and the best rate measured, which the physical floor charges compute at. Run it under
/// <c>ONEDNN_VERBOSE=1</c> to see the kernel LibTorch picks (a oneDNN <c>brg_matmul</c> line per GEMM).
/// </summary>
internal static class GemmRates
{
    public static readonly int[] Rows = [1, 16, 64, 96, 256, 1024];

    /// <summary>Markdown rows and the best rate (FLOP/s) seen.</summary>
    public static (List<string> Rows, double Best) Run(int threads, Action<string>? log = null, ScalarType dtype = ScalarType.BFloat16)
    {
        set_num_threads(threads);
        using var _ = no_grad();
        using var outer = NewDisposeScope();
        var rows = new List<string>();
        double best = 0;
        void Row(string s) { rows.Add(s); log?.Invoke(s); }
        const int h = 2048, q = 2048, kv = 512, ffn = 8192;
        var wq = randn([q, h]).to(dtype);
        var wk = randn([kv, h]).to(dtype);
        var wv = randn([kv, h]).to(dtype);
        var wqkv = cat([wq, wk, wv]);
        var wg = randn([ffn, h]).to(dtype);
        var wu = randn([ffn, h]).to(dtype);
        var wgu = cat([wg, wu]);
        var wd = randn([h, ffn]).to(dtype);
        foreach (int t in Rows)
        {
            using var scope = NewDisposeScope();
            var x = randn([1, t, h]).to(dtype);
            var xf = randn([1, t, ffn]).to(dtype);
            double Rate(double ms, long outF, long inF) => 2.0 * t * outF * inF / (ms / 1e3);
            string Cell(double ms, long outF, long inF) { double r = Rate(ms, outF, inF); best = Math.Max(best, r); return $"{ms:F2} ms, {r / 1e9:F0} GFLOP/s"; }
            double sep = Time(() => { nn.functional.linear(x, wq).Dispose(); nn.functional.linear(x, wk).Dispose(); return nn.functional.linear(x, wv); });
            double fused = Time(() => nn.functional.linear(x, wqkv));
            double sepGu = Time(() => { nn.functional.linear(x, wg).Dispose(); return nn.functional.linear(x, wu); });
            double fusedGu = Time(() => nn.functional.linear(x, wgu));
            double down = Time(() => nn.functional.linear(xf, wd));
            Row($"| {t} | q, k, v: {Cell(sep, q + 2 * kv, h)} | qkv: {Cell(fused, q + 2 * kv, h)} | gate, up: {Cell(sepGu, 2 * ffn, h)} | gate_up: {Cell(fusedGu, 2 * ffn, h)} | down: {Cell(down, h, ffn)} |");
        }
        return (rows, best);
    }

    /// <summary>
    /// Attention kernels on the 1B shape (8 kv heads x 4 folded query heads, head_dim 64, in <paramref name="dtype"/>), causal over S cached positions:
    /// SDPA with the per-layer expanded boolean mask (before), SDPA with the step's additive mask (after), and two
    /// batched GEMMs around a float32 softmax (<c>KVLINK_ATTENTION=matmul</c>). Rates count the FLOPs of QK^T and PV.
    /// </summary>
    public static List<string> Attention(int threads, Action<string>? log = null, ScalarType dtype = ScalarType.BFloat16)
    {
        set_num_threads(threads);
        using var _ = no_grad();
        var rows = new List<string>();
        foreach (int s in new[] { 1240, 5240 })
            foreach (int t in new[] { 1, 62, 512 })
            {
                using var scope = NewDisposeScope();
                var q = randn([1, 8, 4 * t, 64]).to(dtype);
                var k = randn([1, 8, s, 64]).to(dtype);
                var v = randn([1, 8, s, 64]).to(dtype);
                long[] pos = [.. Enumerable.Range(s - t, t).Select(i => (long)i)];
                var mask = KVLink.Core.Model.AttentionMasks.CausalOverCache(pos, s);
                var additive = KVLink.Core.Model.GroupedAttention.Fold(mask, 4, dtype);
                double before = Time(() => nn.functional.scaled_dot_product_attention(q, k, v, mask.unsqueeze(0).expand(4, t, s).reshape(4 * t, s)));
                double sdpa = Time(() => nn.functional.scaled_dot_product_attention(q, k, v, additive));
                double mm = Time(() => KVLink.Core.Model.GroupedAttention.Matmul(q, k, v, additive));
                bool ours = KVLink.Core.Model.SmallRowsAttention.Serves(q, k, v, additive);
                double kernel = ours ? Time(() => KVLink.Core.Model.SmallRowsAttention.Attend(q, k, v, additive)) : 0;
                double flops = 4.0 * 8 * 4 * t * s * 64;
                string R(double ms) => $"{ms:F1} ms ({flops / ms / 1e6:F0} GFLOP/s)";
                string row = $"| T = {t} (x4 heads), S = {s} | {R(before)} | {R(sdpa)} | {R(mm)} | {(ours ? R(kernel) : "–")} |";
                rows.Add(row);
                log?.Invoke(row);
            }
        return rows;
    }

    public const string AttentionHeader = "| attention, per layer | SDPA, bool mask expanded per layer (before) | SDPA, additive mask per step | matmul + f32 softmax + matmul | SmallRowsAttention (float32) |\n|---|---:|---:|---:|---:|";

    public const string Header = "| T | q/k/v separately (before) | q/k/v fused | gate/up separately (before) | gate/up fused | down_proj |\n|---:|---|---|---|---|---|";

    private static double Time(Func<Tensor> f) => Profile.Time(f);
}
