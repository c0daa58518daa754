using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// Float32 compute with bf16 copies for decoding (what <c>ComputeDType.Auto</c> gives CPUs without bf16 units): a decode
/// step's rows read the copies through the decode kernel, prompts keep the float32 GEMMs bit for bit, and the logits are
/// the float32 product of the bf16-rounded weights, within bf16 rounding of the float32 model's.
/// </summary>
public class Bf16DecodeCopyTests
{
    [Fact]
    public void Decoding_rows_read_the_bf16_copies_which_hold_exactly_the_bf16_rounded_weights()
    {
        var c = TestModels.GqaLlama3;
        // Weights that bf16 represents exactly: the copies then hold the same numbers, so only the order of the float32 sums differs.
        var weights = TestModels.RandomWeights(c, seed: 45).ToDictionary(p => p.Key, p =>
        {
            using var t = tensor(p.Value.Data).to(ScalarType.BFloat16).to(ScalarType.Float32);
            return (p.Value.Shape, t.data<float>().ToArray());
        });
        using var model = TestModels.Build(c, weights, ScalarType.Float32);
        var (float32, decoded, products) = DecodeWithAndWithoutCopies(model, seed: 46);
        if (DecodeGemv.Vectorized(c.HiddenSize))
            Assert.Equal(2 * 4 + 1, products); // every projection of both layers (q/k/v, o, gate/up, down) and the vocabulary head
        double diff = (decoded - float32).abs().max().item<float>() / float32.abs().max().item<float>();
        Assert.True(diff < 1e-4, $"the copies' logits deviate by {diff:P4} from LibTorch's float32 product of the same numbers");
        Assert.Equal(float32.argmax(-1).item<long>(), decoded.argmax(-1).item<long>());
    }

    [Fact]
    public void A_float32_models_decode_step_through_its_bf16_copies_stays_within_bf16_rounding_of_float32()
    {
        var c = TestModels.GqaLlama3;
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 47), ScalarType.Float32);
        var (float32, decoded, _) = DecodeWithAndWithoutCopies(model, seed: 48);
        double diff = (decoded - float32).abs().max().item<float>(), scale = float32.abs().max().item<float>();
        Assert.True(diff / scale < 0.02, $"decoding through bf16 copies deviates by {diff / scale:P2} of the largest float32 logit");
    }

    [Fact]
    public void Copies_are_made_of_every_float32_projection_and_the_head_and_of_nothing_else()
    {
        var c = TestModels.GqaLlama3;
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 49), ScalarType.Float32);
        long projections = model.named_parameters()
            .Where(p => p.parameter.dim() == 2 && p.name is not ("model.embed_tokens.weight" or "lm_head.weight")).Sum(p => p.parameter.numel());
        Assert.Equal(2 * (projections + c.VocabSize * c.HiddenSize), model.KeepBf16ForDecoding());
        using var bf16 = TestModels.Build(c, TestModels.RandomWeights(c, seed: 49), ScalarType.BFloat16);
        Assert.Equal(0, bf16.KeepBf16ForDecoding()); // bf16 weights are read in place
    }

    /// <summary>
    /// Prefills a prompt twice (before and after adding the copies: bit-identical, prompts never read them), then one decode
    /// step unmarked (LibTorch's float32 GEMMs) and one marked (the copies); returns both logits and the kernel's products.
    /// </summary>
    private static (Tensor Float32, Tensor Decoded, long Products) DecodeWithAndWithoutCopies(LlamaForCausalLM model, int seed)
    {
        var c = model.Config;
        int[] prompt = TestModels.RandomTokens(12, c.VocabSize, seed);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var cacheA = new AttentionCache(c, 16, ScalarType.Float32);
        using var cacheB = new AttentionCache(c, 16, ScalarType.Float32);
        var before = CausalPrefill.Run(model, cacheA, prompt);
        model.KeepBf16ForDecoding();
        var after = CausalPrefill.Run(model, cacheB, prompt);
        Assert.Equal(0f, (before - after).abs().max().item<float>());

        long start = DecodeGemv.ProductsOnThisThread;
        var float32 = TestModels.DecodeStep(model, cacheA, prompt.Length, token: 9);
        Assert.Equal(start, DecodeGemv.ProductsOnThisThread); // no decoding rows: LibTorch's GEMMs
        var decoded = TestModels.DecodeStep(model, cacheB, prompt.Length, token: 9, DecodeRows.All(int8: false));
        Assert.Equal(ScalarType.Float32, decoded.dtype);
        return (float32.MoveToOuterDisposeScope(), decoded.MoveToOuterDisposeScope(), DecodeGemv.ProductsOnThisThread - start);
    }
}
