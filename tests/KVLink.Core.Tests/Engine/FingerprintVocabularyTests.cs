using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Tests.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Engine;

/// <summary>A vocabulary with unused ids (cl100k ranks under Llama 3's specials from 128000) can be fingerprinted and served.</summary>
public class FingerprintVocabularyTests
{
    [Fact]
    public void A_tokenizer_with_unused_ids_gets_a_stable_fingerprint_that_differs_from_another_tokenizers()
    {
        var tokenizer = Cl100kTestData.Tokenizer;
        Assert.False(tokenizer.HasToken(100_256)); // the hole between cl100k's ranks and the specials
        var config = TestModelsConfig(tokenizer.VocabSize);
        using var model = new LlamaForCausalLM(config, ScalarType.Float32);
        SyntheticCheckpointWeights(model);

        string a = ModelFingerprint.Compute(model, tokenizer);
        string b = ModelFingerprint.Compute(model, tokenizer);
        string other = ModelFingerprint.Compute(model, Cl100kTestData.Llama30Tokenizer);

        Assert.Equal(a, b);
        Assert.NotEqual(a, other);
    }

    private static LlamaConfig TestModelsConfig(int vocab) => KVLink.Core.Tests.Model.TestModels.GqaLlama3 with
    {
        VocabSize = vocab, HiddenSize = 16, IntermediateSize = 32, NumAttentionHeads = 2, NumKeyValueHeads = 1, HeadDim = 8,
        NumHiddenLayers = 1, BosTokenId = 128000, EosTokenIds = [128001],
    };

    private static void SyntheticCheckpointWeights(LlamaForCausalLM model) => KVLink.TestSupport.SyntheticCheckpoint.Randomize(model, seed: 3);
}
