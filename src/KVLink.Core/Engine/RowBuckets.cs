using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// Rounds the rows of a small model's reduced-precision step up to a few row counts, so its GEMMs reuse oneDNN's
/// primitives instead of creating new ones.
/// </summary>
/// <remarks>
/// LibTorch runs bf16 and fp16 products on the CPU through oneDNN, which creates (and caches) a primitive for every new
/// shape: about 0.7 ms each on the demo model's products, where a whole step of eight prompts costs 7-8 ms. A burst of
/// prompts gives its groups a new row count almost every step, so a small model paid more for primitives than for its
/// GEMMs (282 cache misses, 195 ms in a 16-round burst, docs/serving.md). Padding the step's rows (token 0 at position 0,
/// attending nowhere, written to no cache, their outputs dropped) costs at most an eighth more rows.
/// Float32 products go to MKL, which creates nothing, and a large model's step is long enough that a primitive is noise
/// while an eighth more rows is not: both keep their exact row count.
/// </remarks>
internal static class RowBuckets
{
    /// <summary>Up to this many rows (decoding steps) a step keeps its count: few distinct counts, all reused.</summary>
    public const int ExactUpTo = 16;

    /// <summary>Whether a step of <paramref name="model"/> pads its rows.</summary>
    public static bool Applies(LlamaForCausalLM model)
        => model.Device.type == TorchSharp.DeviceType.CPU
           && model.DType is ScalarType.BFloat16 or ScalarType.Float16
           && model.WeightBytes <= StepGroups.SmallModelBytes;

    /// <summary>
    /// The row count a step of <paramref name="rows"/> rows runs with: itself up to <see cref="ExactUpTo"/>, else the next
    /// multiple of an eighth of the power of two at or below it (at least 8): 8 counts per doubling, so at most 7 rows
    /// of padding below 64 rows and at most 12.5 % above.
    /// </summary>
    public static int Padded(int rows)
    {
        if (rows <= ExactUpTo) return rows;
        int step = Math.Max(8, 1 << (System.Numerics.BitOperations.Log2((uint)rows) - 3));
        return (rows + step - 1) / step * step;
    }
}
