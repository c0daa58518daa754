using KVLink.Core.Native;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.TestSupport;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// Weight-only int8 for decoding: the quantization, the vectorised matrix-vector product at every width this CPU runs,
/// where it applies, and its refusal where no vector kernel serves the CPU.
/// </summary>
public class Int8WeightTests
{
    public static TheoryData<int, int, int, int, string> Products()
    {
        var data = new TheoryData<int, int, int, int, string>();
        foreach (var k in DecodeGemv.Supported.Select(k => k.ToString()))
        {
            data.Add(67, 96, 0, 67, k);    // rows not a multiple of 4: the scalar row tail runs too
            data.Add(300, 64, 40, 200, k); // a row range, as a fused weight's parts use
            data.Add(9, 20, 0, 9, k);      // columns not a whole number of vectors at any width: the scalar column tail
        }
        return data;
    }

    /// <summary>
    /// The int8 copy of <paramref name="w"/>, or null after checking that it is refused, naming the CPU, where no vector
    /// kernel serves this CPU (the int8 product must never run on scalar loops alone).
    /// </summary>
    internal static Int8Weight? QuantizeOrRefused(Tensor w)
    {
        if (DecodeGemv.Detected != DecodeKernel.Scalar) return Int8Weight.Quantize(w);
        var e = Assert.Throws<NotSupportedException>(() => Int8Weight.Quantize(w));
        Assert.Contains("DecodeWithInt8Weights", e.Message);
        Assert.Contains(System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString(), e.Message);
        return null;
    }

    [Theory]
    [MemberData(nameof(Products))]
    public void The_product_equals_the_input_times_the_dequantized_weight(int rows, int cols, int first, int count, string kernel)
    {
        using var scope = NewDisposeScope();
        var w = (randn([rows, cols], generator: new Generator(3)) * (rand([rows, 1], generator: new Generator(4)) + 0.1)).to(ScalarType.BFloat16);
        if (QuantizeOrRefused(w) is not { } q) return;
        var x = randn([1, 1, cols], generator: new Generator(5));
        var deq = q.Dequantize();

        Tensor y;
        using (DecodeGemv.Use(Enum.Parse<DecodeKernel>(kernel))) y = q.Multiply(x, first, count);
        var expected = nn.functional.linear(x, deq.narrow(0, first, count));

        Assert.Equal([1L, 1L, (long)count], y.shape);
        double err = (y - expected).abs().max().item<float>(), scale = expected.abs().max().item<float>();
        Assert.True(err / scale < 1e-5, $"relative error {err / scale:E2}");
        // Per output channel: every weight is within half a step of its row's scale.
        var step = w.to(ScalarType.Float32).abs().amax([1], keepdim: true) / 127;
        Assert.True(((deq - w.to(ScalarType.Float32)).abs() <= step / 2 + 1e-6).all().item<bool>(), "a weight is off by more than half a quantization step");
    }

    public static TheoryData<int, bool, string> Batches()
    {
        var data = new TheoryData<int, bool, string>();
        foreach (var k in DecodeGemv.Supported.Select(k => k.ToString()))
        {
            data.Add(2, true, k);
            data.Add(5, true, k);   // one group of 4 token rows and a single one
            data.Add(16, true, k);  // the most a product serves
            data.Add(7, false, k);  // on .NET's pool, where LibTorch's OpenMP team is not used
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Batches))]
    public void A_batched_decode_product_equals_each_token_row_times_the_dequantized_weight(int tokens, bool openMpTeam, string kernel)
    {
        using var scope = NewDisposeScope();
        var w = randn([522, 128], generator: new Generator(6)).to(ScalarType.BFloat16);
        if (QuantizeOrRefused(w) is not { } q) return;
        using var use = DecodeGemv.Use(Enum.Parse<DecodeKernel>(kernel));
        var x = randn([tokens, 1, 128], generator: new Generator(7));
        var expected = nn.functional.linear(x, q.Dequantize().narrow(0, 8, 510));
        Tensor y;
        OpenMpTeam.Enabled = openMpTeam;
        try
        {
            Assert.Equal(tokens, DecodeRows.All().Served(x, q.Cols)); // every row of a decode step
            y = q.Multiply(x, 8, 510);
        }
        finally { OpenMpTeam.Enabled = true; }

        Assert.Equal([(long)tokens, 1L, 510L], y.shape);
        double err = (y - expected).abs().max().item<float>(), scale = expected.abs().max().item<float>();
        Assert.True(err / scale < 1e-5, $"relative error {err / scale:E2}");

        // A step whose first 3 rows decode and whose other rows are a prompt chunk: int8 for those 3 rows only.
        var mixed = randn([1, 7, 128], generator: new Generator(8));
        Tensor split;
        var three = new DecodeRows(3, Int8: true);
        Assert.Equal(3, three.Served(mixed, q.Cols)); // not the prompt rows after them
        split = q.Forward(mixed, three, 8, 510, xs => nn.functional.linear(xs, w.to(ScalarType.Float32).narrow(0, 8, 510)));
        var head = q.Multiply(mixed.narrow(1, 0, 3), 8, 510);
        var tail = nn.functional.linear(mixed.narrow(1, 3, 4), w.to(ScalarType.Float32).narrow(0, 8, 510));
        Assert.Equal([1L, 7L, 510L], split.shape);
        Assert.Equal(0f, (split - cat([head, tail], 1)).abs().max().item<float>()); // int8 for the decoding prefix, full precision after it
        Assert.Equal(0, default(DecodeRows).Served(mixed, q.Cols)); // outside a decode step nothing is served
    }

    [Fact]
    public void Int8_weights_serve_decode_steps_only_prompts_stay_exact_and_decoded_logits_stay_close()
    {
        var c = TestModels.GqaLlama3;
        var weights = TestModels.RandomWeights(c, seed: 41);
        using var plain = TestModels.Build(c, weights, ScalarType.BFloat16);
        using var quantized = TestModels.Build(c, weights, ScalarType.BFloat16);
        if (DecodeGemv.Detected == DecodeKernel.Scalar)
        {
            // The refusal reaches the model's quantization itself, so the engine's load (which calls it) fails with it.
            Assert.Contains("needs a vector decode kernel", Assert.Throws<NotSupportedException>(() => quantized.QuantizeInt8ForDecoding()).Message);
            return;
        }
        Assert.True(quantized.QuantizeInt8ForDecoding() > 0);
        int[] prompt = TestModels.RandomTokens(12, c.VocabSize, seed: 42);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var cacheA = new AttentionCache(c, 16, ScalarType.BFloat16);
        using var cacheB = new AttentionCache(c, 16, ScalarType.BFloat16);

        // The prompt, and a single-token forward outside a decode step, use the bf16 weights: bit-identical.
        var a = CausalPrefill.Run(plain, cacheA, prompt);
        var b = CausalPrefill.Run(quantized, cacheB, prompt);
        Assert.Equal(0f, (a - b).abs().max().to(ScalarType.Float32).item<float>());
        var one = tensor(new long[] { prompt[0] }, [1, 1]);
        Assert.Equal(0f, (plain.Forward(one) - quantized.Forward(one)).abs().max().to(ScalarType.Float32).item<float>());

        // A decode step uses the int8 copies (the plain model's the bf16 decode kernel): different bits, close values.
        var da = TestModels.DecodeStep(plain, cacheA, prompt.Length, token: 7, DecodeRows.All());
        var db = TestModels.DecodeStep(quantized, cacheB, prompt.Length, token: 7, DecodeRows.All());
        double diff = (da - db).abs().max().item<float>(), scale = da.abs().max().item<float>();
        Assert.True(diff > 0, "the decode step did not use the int8 weights");
        Assert.True(diff / scale < 0.05, $"int8 decode logits deviate by {diff / scale:P1} of the largest logit");
    }
}
