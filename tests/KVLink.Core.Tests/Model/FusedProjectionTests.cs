using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>
/// q/k/v and gate/up run as one GEMM over one fused weight whose row blocks are the checkpoint's parameters:
/// writes to a parameter (loading, an optimizer step) must reach the fused forward, and the per-part path
/// autograd uses must give the same logits and gradients to every part.
/// </summary>
public class FusedProjectionTests
{
    [Theory]
    [InlineData("self_attn.k_proj.weight")]
    [InlineData("self_attn.q_proj.weight")]
    [InlineData("self_attn.v_proj.weight")]
    [InlineData("mlp.up_proj.weight")]
    [InlineData("mlp.gate_proj.weight")]
    public void A_parameter_written_in_place_changes_the_fused_forward_as_a_fresh_model_with_that_weight(string part)
    {
        var c = TestModels.GqaLlama3;
        var weights = TestModels.RandomWeights(c, seed: 11);
        var changed = TestModels.RandomWeights(c, seed: 12);
        string name = "model.layers.1." + part;
        using var model = TestModels.Build(c, weights);
        var expectedWeights = new Dictionary<string, (long[] Shape, float[] Data)>(weights) { [name] = changed[name] };
        using var expectedModel = TestModels.Build(c, expectedWeights);
        int[] tokens = TestModels.RandomTokens(7, c.VocabSize, seed: 13);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        var before = model.Forward(ids);

        var parameter = model.named_parameters().Single(p => p.name == name).parameter;
        parameter.copy_(tensor(changed[name].Data, changed[name].Shape));
        var after = model.Forward(ids);
        var expected = expectedModel.Forward(ids);

        Assert.True((after - before).abs().max().item<float>() > 1e-3, "the in-place write did not reach the forward");
        Assert.Equal(0f, (after - expected).abs().max().item<float>());
    }

    [Fact]
    public void With_gradients_the_parts_run_one_by_one_with_the_same_logits_and_every_part_gets_a_gradient()
    {
        var c = TestModels.GqaLlama3;
        using var model = TestModels.Build(c, TestModels.RandomWeights(c, seed: 21));
        int[] tokens = TestModels.RandomTokens(6, c.VocabSize, seed: 22);
        using var scope = NewDisposeScope();
        var ids = tensor(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]);
        Tensor fused;
        using (no_grad()) fused = model.Forward(ids);

        foreach (var p in model.parameters()) p.requires_grad_(true);
        var logits = model.Forward(ids);
        logits.sum().backward();

        double diff = (logits.detach() - fused).abs().max().item<float>();
        double scale = fused.abs().max().item<float>();
        Assert.True(diff / scale < 1e-5, $"per-part logits differ from the fused ones by {diff / scale:E2}");
        foreach (var (name, p) in model.named_parameters().Where(p => p.name.Contains("_proj")))
            Assert.True(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name} got no gradient");
    }
}
