using KVLink.TestSupport;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Tests.Model;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>Issue #19, item 11: a tokenizer with ids the embedding lacks is refused where model and tokenizer meet,
/// naming both numbers, instead of failing at the first request with "index out of range in self".</summary>
public sealed class VocabularyFitTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(300, false)] // the issue: ids up to 511 over 300 rows
    [InlineData(511, false)] // one row short
    [InlineData(512, true)]  // exact fit
    [InlineData(640, true)]  // padded embedding, as many checkpoints have
    public void The_engine_accepts_a_tokenizer_only_when_every_id_has_an_embedding_row(int vocab, bool fits)
    {
        var c = TestModels.GqaLlama3 with { VocabSize = vocab };
        using var model = new LlamaForCausalLM(c, ScalarType.Float32);
        SyntheticCheckpoint.WriteTokenizer(_dir.File("tokenizer.json"));
        var tokenizer = LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        Assert.Equal(512, tokenizer.VocabSize);

        if (fits)
        {
            using var engine = new KvLinkEngine(model, tokenizer);
            return;
        }
        var e = Assert.Throws<InvalidDataException>(() => new KvLinkEngine(model, tokenizer));
        Assert.Contains("token ids up to 511", e.Message);
        Assert.Contains($"vocab_size {vocab}", e.Message);
    }

    [Fact]
    public async Task LoadAsync_refuses_a_folder_whose_tokenizer_outgrows_config_vocab_size()
    {
        var c = TestModels.GqaLlama3; // vocab_size 300
        using (var m = TestModels.Build(c, TestModels.RandomWeights(c, seed: 41))) LlamaCheckpoint.Save(m, _dir.Path);
        SyntheticCheckpoint.WriteTokenizer(_dir.File("tokenizer.json"));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => KvLinkEngine.LoadAsync(_dir.Path, new KvLinkOptions { DType = ComputeDType.Float32 }));
        Assert.Contains("511", e.Message);
        Assert.Contains("vocab_size 300", e.Message);
    }
}
