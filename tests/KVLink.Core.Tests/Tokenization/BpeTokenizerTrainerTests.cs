using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Tokenization;

public sealed class BpeTokenizerTrainerTests
{
    [Fact]
    public void BpeTokenizerLearnsWholeWordsAndCarriesTheKvLinkSpecials()
    {
        using var dir = new TempFolder();
        var texts = Enumerable.Repeat("Born in Zellainville. Works for Kimelcorp.", 5).ToList();
        var result = BpeTokenizerTrainer.Train(texts, merges: 200);
        int vocab = BpeTokenizerTrainer.Write(dir.File("tokenizer.json"), result);
        var tok = LlamaTokenizer.FromHuggingFaceJson(dir.File("tokenizer.json"));
        Assert.Equal(vocab, tok.VocabSize);
        var ids = tok.Encode("Born in Zellainville.");
        Assert.True(ids.Count <= 4, $"{ids.Count} tokens");
        Assert.Equal("Born in Zellainville.", tok.Decode(ids));
        var format = KvLinkLlama3Format.FromTokenizer(tok, "S");
        Assert.Equal(result.Vocab.Count + 11, format.LinkTokenStart);
    }
}
