using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using KVLink.Core.Native;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Float32 attention of a few hundred query rows (a link pass: KVLink5 over 10 documents is 62 tokens, 248 folded rows per
/// kv head) over thousands of cached keys, where LibTorch's SDPA runs at ~107 GFLOP/s on the 2-core machine of
/// docs/benchmarks.md (24.5 ms a layer at 5k keys, ~400 ms of the TTFT). Per kv head: the scores Q K^T with the keys'
/// lanes across keys (a block of keys transposed into L1 once, then 4 query rows x 2 vectors of keys per step: 8
/// accumulators, each query element broadcast), scaled and masked as they are stored; each row's softmax with
/// <see cref="System.Numerics.Tensors.TensorPrimitives"/>; then P V with lanes across the head dimension (3 rows x 4 vectors: 12 accumulators).
/// Heads are split over LibTorch's OpenMP team; each thread keeps its scratch (the scores of one kv head: rows x keys
/// floats, 5 MB at 5k keys, at most 32 MB) for the next call. Same sums as SDPA in another order: float32 rounding apart,
/// the same result. Measured (--gemm-rates, T = 62, S = 5,240, 2 threads): 14.2 ms against SDPA's 23.5 with Vector512,
/// 22.1 against 24.6 with Vector256 (emulated AVX2).
/// </summary>
internal static unsafe class SmallRowsAttention
{
    /// <summary>Folded query rows per kv head the kernel takes (4 or more, so the last block of 4 can overlap).</summary>
    public const int MinRows = 4, MaxRows = 256;

    /// <summary>The fewest keys: below, SDPA's fixed costs are small and it was not measured against.</summary>
    public const int MinKeys = 1024;

    /// <summary>The most keys: the scores of one kv head (rows x keys floats) live in a per-thread buffer.</summary>
    public const int MaxKeys = 32768;

    /// <summary>Keys transposed per block (a multiple of 2 vectors at every width).</summary>
    private const int KeyBlock = 64;

    private static readonly KernelSwitch s_switch = new();
    [ThreadStatic] private static long t_calls;
    [ThreadStatic] private static float* t_scratch;
    [ThreadStatic] private static long t_scratchFloats;

    /// <summary>Calls this thread has run through the kernel (tests: which path a forward took).</summary>
    public static long CallsOnThisThread => t_calls;

    /// <summary>Runs this thread's attention through SDPA until disposed (tests: the reference the kernel must equal).</summary>
    public static KernelSwitch.Scope Off() => s_switch.Off();

    /// <summary>Whether q ([1, KV, R, d]) over k, v ([1, KV, S, d]) under a [R, S] additive mask goes through the kernel.</summary>
    public static bool Serves(Tensor q, Tensor k, Tensor v, Tensor mask)
    {
        if (s_switch.IsOff || DecodeGemv.Kernel == DecodeKernel.Scalar) return false;
        foreach (var t in (ReadOnlySpan<Tensor>)[q, k, v, mask])
            if (t.dtype != ScalarType.Float32 || t.device_type != TorchSharp.DeviceType.CPU || (t.requires_grad && is_grad_enabled())) return false;
        if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4 || mask.dim() != 2 || q.shape[0] != 1 || k.shape[0] != 1 || v.shape[0] != 1) return false;
        long heads = q.shape[1], rows = q.shape[2], d = q.shape[3], keys = k.shape[2];
        return k.shape[1] == heads && v.shape[1] == heads && k.shape[3] == d && v.shape[3] == d && v.shape[2] == keys
            && mask.shape[0] == rows && mask.shape[1] == keys && mask.is_contiguous()
            && rows is >= MinRows and <= MaxRows && keys is >= MinKeys and <= MaxKeys && TakesHeadWidth(d)
            && k.stride(3) == 1 && k.stride(2) == d && v.stride(3) == 1 && v.stride(2) == d;
    }

    /// <summary>Whether a model of <paramref name="c"/> can take the kernel on this CPU: a vector tier and a head width of whole 4-vector blocks.</summary>
    public static bool TakesHeadsOf(LlamaConfig c) => DecodeGemv.Kernel != DecodeKernel.Scalar && TakesHeadWidth(c.HeadDim);

    /// <summary>A head width of whole blocks of 4 vectors (P V's register block), at most 512.</summary>
    private static bool TakesHeadWidth(long d) => d % (4 * Lanes) == 0 && d <= 512;

    private static int Lanes => DecodeGemv.Kernel switch { DecodeKernel.Vector512 => 16, DecodeKernel.Vector256 => 8, _ => 4 };

    /// <summary>softmax(q k^T / sqrt(d) + mask) v for inputs the kernel <see cref="Serves"/>; returns [1, KV, R, d].</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor mask)
    {
        t_calls++;
        using var scope = NewDisposeScope();
        var qc = q.contiguous();
        var o = empty(q.shape, ScalarType.Float32);
        {
            // k and v are views of the attention cache: their data starts at their own offset, heads stride(1) apart.
            var job = new Job
            {
                Q = (float*)RopeRerotation.Data(qc), K = (float*)RopeRerotation.Data(k), V = (float*)RopeRerotation.Data(v),
                Mask = (float*)RopeRerotation.Data(mask), O = (float*)RopeRerotation.Data(o),
                KHead = k.stride(1), VHead = v.stride(1), Heads = (int)q.shape[1], Rows = (int)q.shape[2], Keys = (int)k.shape[2], D = (int)q.shape[3],
                Scale = (float)(1.0 / Math.Sqrt(q.shape[3])),
            };
            int threads = Math.Max(1, Math.Min(get_num_threads(), job.Heads));
            switch (DecodeGemv.Kernel)
            {
                case DecodeKernel.Vector512: OpenMpTeam.RunOrPool(threads, &ThreadShare<Width512, Vector512<float>>, &job); break;
                case DecodeKernel.Vector256: OpenMpTeam.RunOrPool(threads, &ThreadShare<Width256, Vector256<float>>, &job); break;
                default: OpenMpTeam.RunOrPool(threads, &ThreadShare<Width128, Vector128<float>>, &job); break;
            }
        }
        return o.MoveToOuterDisposeScope();
    }

    private struct Job
    {
        public float* Q, K, V, Mask, O;
        public long KHead, VHead;
        public int Heads, Rows, Keys, D;
        public float Scale;
    }

    private static void ThreadShare<TWidth, TVec>(void* state, int thread, int threads) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        var job = (Job*)state;
        long need = (long)job->Rows * job->Keys + (long)job->D * KeyBlock + job->Rows + 8 * 16;
        if (t_scratchFloats < need)
        {
            NativeMemory.AlignedFree(t_scratch);
            t_scratch = (float*)NativeMemory.AlignedAlloc((nuint)(need * sizeof(float)), 64);
            t_scratchFloats = need;
        }
        for (int h = thread; h < job->Heads; h += threads) Head<TWidth, TVec>(job, h, t_scratch);
    }

    /// <summary>One kv head: scores into <paramref name="scratch"/>, softmax in place, then P V into the output.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Head<TWidth, TVec>(Job* job, int h, float* scratch) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        int rows = job->Rows, keys = job->Keys, d = job->D;
        float* q = job->Q + (long)h * rows * d, k = job->K + h * job->KHead, v = job->V + h * job->VHead, o = job->O + (long)h * rows * d;
        float* scores = scratch, kt = scratch + (long)rows * keys, sums = kt + (long)d * KeyBlock, tail = sums + rows;
        for (int k0 = 0; k0 < keys; k0 += KeyBlock)
        {
            int n = Math.Min(KeyBlock, keys - k0);
            // The block's keys transposed: kt[i * KeyBlock + j] = k[k0 + j][i]; keys past the end are zero.
            for (int j = 0; j < KeyBlock; j++)
            {
                float* row = k + (long)(k0 + j) * d;
                if (j < n) for (int i = 0; i < d; i++) kt[i * KeyBlock + j] = row[i];
                else for (int i = 0; i < d; i++) kt[i * KeyBlock + j] = 0;
            }
            // Blocks of 4 rows; the last 1-3 rows take the last 4 again (scores are written, not added, so overlap is harmless).
            for (int r = 0; r < rows; r += 4)
            {
                int r0 = Math.Min(r, rows - 4);
                for (int j = 0; j < n; j += 2 * TWidth.Lanes) Scores<TWidth, TVec>(job, q + (long)r0 * d, kt + j, d, scores + (long)r0 * keys + k0 + j, job->Mask + (long)r0 * keys + k0 + j, keys, n - j, tail);
            }
        }
        for (int r = 0; r < rows; r++)
        {
            var row = new Span<float>(scores + (long)r * keys, keys);
            float max = TensorPrimitives.Max(row);
            TensorPrimitives.Subtract(row, max, row);
            TensorPrimitives.Exp(row, row);
            sums[r] = TensorPrimitives.Sum(row);
        }
        for (int r = 0; r < rows; r += 3)
        {
            int r0 = Math.Min(r, rows - 3);
            for (int c = 0; c < d; c += 4 * TWidth.Lanes) Values<TWidth, TVec>(scores + (long)r0 * keys, keys, v + c, d, o + (long)r0 * d + c, sums + r0);
        }
    }

    /// <summary>
    /// Scores of 4 query rows (<paramref name="d"/> apart) against 2 vectors of transposed keys: scaled, plus the mask, stored
    /// to rows <paramref name="stride"/> apart; where fewer than 2 vectors of keys remain (<paramref name="valid"/>), only those,
    /// through <paramref name="tmp"/> (8 vectors of scratch). Nothing here calls out (no stackalloc, whose zeroing is a call):
    /// a call after the loop made the JIT store and reload all 8 accumulators on every step of it (checked in the disassembly).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Scores<TWidth, TVec>(Job* job, float* q, float* kt, int d, float* s, float* m, int stride, int valid, float* tmp) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        TVec a00 = TWidth.Zero, a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        float* q1 = q + d, q2 = q1 + d, q3 = q2 + d;
        for (int i = 0; i < d; i++)
        {
            TVec k0 = TWidth.Load(kt + i * KeyBlock), k1 = TWidth.Load(kt + i * KeyBlock + TWidth.Lanes);
            TVec b = TWidth.Broadcast(q[i]);
            a00 = TWidth.MultiplyAdd(b, k0, a00); a01 = TWidth.MultiplyAdd(b, k1, a01);
            b = TWidth.Broadcast(q1[i]);
            a10 = TWidth.MultiplyAdd(b, k0, a10); a11 = TWidth.MultiplyAdd(b, k1, a11);
            b = TWidth.Broadcast(q2[i]);
            a20 = TWidth.MultiplyAdd(b, k0, a20); a21 = TWidth.MultiplyAdd(b, k1, a21);
            b = TWidth.Broadcast(q3[i]);
            a30 = TWidth.MultiplyAdd(b, k0, a30); a31 = TWidth.MultiplyAdd(b, k1, a31);
        }
        TVec scale = TWidth.Broadcast(job->Scale);
        if (valid >= 2 * TWidth.Lanes)
        {
            Put<TWidth, TVec>(a00, a01, scale, s, m);
            Put<TWidth, TVec>(a10, a11, scale, s + stride, m + stride);
            Put<TWidth, TVec>(a20, a21, scale, s + 2 * stride, m + 2 * stride);
            Put<TWidth, TVec>(a30, a31, scale, s + 3 * stride, m + 3 * stride);
            return;
        }
        int w = 2 * TWidth.Lanes;
        TWidth.Store(a00, tmp); TWidth.Store(a01, tmp + TWidth.Lanes);
        TWidth.Store(a10, tmp + w); TWidth.Store(a11, tmp + w + TWidth.Lanes);
        TWidth.Store(a20, tmp + 2 * w); TWidth.Store(a21, tmp + 2 * w + TWidth.Lanes);
        TWidth.Store(a30, tmp + 3 * w); TWidth.Store(a31, tmp + 3 * w + TWidth.Lanes);
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < valid; j++) s[r * stride + j] = tmp[r * w + j] * job->Scale + m[r * stride + j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Put<TWidth, TVec>(TVec a0, TVec a1, TVec scale, float* s, float* m) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        TWidth.Store(TWidth.MultiplyAdd(a0, scale, TWidth.Load(m)), s);
        TWidth.Store(TWidth.MultiplyAdd(a1, scale, TWidth.Load(m + TWidth.Lanes)), s + TWidth.Lanes);
    }

    /// <summary>
    /// 3 rows of unnormalised probabilities (<paramref name="keys"/> apart) times 4 vectors of value columns (rows
    /// <paramref name="d"/> apart), divided by the rows' sums, into 3 output rows <paramref name="d"/> apart.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Values<TWidth, TVec>(float* p, int keys, float* v, int d, float* o, float* sums) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        TVec a00 = TWidth.Zero, a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00, a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        float* p1 = p + keys, p2 = p1 + keys;
        int l = TWidth.Lanes;
        for (int s = 0; s < keys; s++)
        {
            // 12 accumulators, 3 broadcast probabilities and one value vector at a time: AVX2's 16 registers, nothing spilled.
            float* vr = v + (long)s * d;
            TVec b0 = TWidth.Broadcast(p[s]), b1 = TWidth.Broadcast(p1[s]), b2 = TWidth.Broadcast(p2[s]);
            TVec x = TWidth.Load(vr);
            a00 = TWidth.MultiplyAdd(b0, x, a00); a10 = TWidth.MultiplyAdd(b1, x, a10); a20 = TWidth.MultiplyAdd(b2, x, a20);
            x = TWidth.Load(vr + l);
            a01 = TWidth.MultiplyAdd(b0, x, a01); a11 = TWidth.MultiplyAdd(b1, x, a11); a21 = TWidth.MultiplyAdd(b2, x, a21);
            x = TWidth.Load(vr + 2 * l);
            a02 = TWidth.MultiplyAdd(b0, x, a02); a12 = TWidth.MultiplyAdd(b1, x, a12); a22 = TWidth.MultiplyAdd(b2, x, a22);
            x = TWidth.Load(vr + 3 * l);
            a03 = TWidth.MultiplyAdd(b0, x, a03); a13 = TWidth.MultiplyAdd(b1, x, a13); a23 = TWidth.MultiplyAdd(b2, x, a23);
        }
        Row<TWidth, TVec>(a00, a01, a02, a03, 1f / sums[0], o);
        Row<TWidth, TVec>(a10, a11, a12, a13, 1f / sums[1], o + d);
        Row<TWidth, TVec>(a20, a21, a22, a23, 1f / sums[2], o + 2 * d);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Row<TWidth, TVec>(TVec a0, TVec a1, TVec a2, TVec a3, float inverse, float* o) where TWidth : IVectorWidth<TVec> where TVec : struct
    {
        TVec z = TWidth.Zero, f = TWidth.Broadcast(inverse);
        int l = TWidth.Lanes;
        TWidth.Store(TWidth.MultiplyAdd(a0, f, z), o);
        TWidth.Store(TWidth.MultiplyAdd(a1, f, z), o + l);
        TWidth.Store(TWidth.MultiplyAdd(a2, f, z), o + 2 * l);
        TWidth.Store(TWidth.MultiplyAdd(a3, f, z), o + 3 * l);
    }
}
