using System.Text;
using System.Text.Json.Nodes;
using KVLink.Core.Tokenization;
using Xunit;

namespace KVLink.Core.Tests.Tokenization;

public sealed class HuggingFaceJsonTokenizerTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> Texts => new()
    {
        "hello world",
        "Héllo wörld, crème brûlée",
        "日本 and 中文 😀👍🏽",
        "tabs\tand\nnewlines\r\n\n 123456",
        "",
    };

    [Theory]
    [MemberData(nameof(Texts))]
    public void RoundTripsText(string text)
    {
        var tok = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(_dir.Path));
        var ids = tok.Encode(text);
        Assert.Equal(text, tok.Decode(ids));
        Assert.Equal(Encoding.UTF8.GetBytes(text), ids.SelectMany(id => tok.TokenBytes(id).ToArray()).ToArray());
    }

    [Fact]
    public void AppliesMerges()
    {
        var tok = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(_dir.Path));
        int Id(string t) => TinyByteLevelTokenizer.IdOf(t);
        Assert.Equal([Id("he")], tok.Encode("he"));
        Assert.Equal([Id("hell"), 'o', Id(" w"), 'o', 'r', 'l', 'd'], tok.Encode("hello world"));
        Assert.Equal([Id("é")], tok.Encode("é"));
        // Three bytes merged in two steps through a pair that is not valid UTF-8 by itself.
        Assert.Equal([Id("日")], tok.Encode("日"));
        Assert.Equal(302, tok.VocabSize);
    }

    [Fact]
    public void KeepsSpecialTokensWhole()
    {
        var tok = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(_dir.Path));
        var ids = tok.Encode("<|begin_of_text|>he<|eot_id|>");
        Assert.Equal([TinyByteLevelTokenizer.BeginOfText, TinyByteLevelTokenizer.IdOf("he"), TinyByteLevelTokenizer.EotId], ids);
        Assert.Equal("<|begin_of_text|>he<|eot_id|>", tok.Decode(ids));
        Assert.Equal(TinyByteLevelTokenizer.EotId, tok.TokenToId("<|eot_id|>"));
        Assert.Equal(2, tok.SpecialTokens.Count);
    }

    [Fact]
    public void AcceptsMergesWrittenAsStrings()
    {
        string path = TinyByteLevelTokenizer.Write(_dir.Path);
        var expected = LlamaTokenizer.FromHuggingFaceJson(path).Encode("hello world 日本 é");
        var root = JsonNode.Parse(File.ReadAllText(path))!;
        var merges = root["model"]!["merges"]!.AsArray();
        var asStrings = new JsonArray(merges.Select(m => (JsonNode)JsonValue.Create($"{m![0]} {m[1]}")).ToArray());
        root["model"]!["merges"] = asStrings;
        File.WriteAllText(path, root.ToJsonString());
        Assert.Equal(expected, LlamaTokenizer.FromHuggingFaceJson(path).Encode("hello world 日本 é"));
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void IgnoreMergesGivesSameIdsForRankOrderedMerges(string text)
    {
        // With merges in id order, tiktoken's rank rule (used for ignore_merges) must agree with BPE merges.
        var bpe = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(_dir.Path));
        using var other = new TempFolder();
        var ranked = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(other.Path, ignoreMerges: true));
        Assert.Equal(bpe.Encode(text), ranked.Encode(text));
        Assert.Equal(text, ranked.Decode(ranked.Encode(text)));
    }

    [Theory]
    [InlineData("{ \"model\": ", "JSON")]
    [InlineData("{ \"model\": { \"type\": \"WordPiece\", \"vocab\": { \"a\": 0 } } }", "model.type")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"merges\": [] } }", "model.vocab")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0, \"b\": 1 }, \"merges\": [\"a b\"] } }", "merges")]
    [InlineData("[1, 2]", "top level")]
    [InlineData("{ \"model\": { \"type\": \"BPE\", \"vocab\": { \"a\": 0 } }, \"added_tokens\": [ { \"id\": 2000000000, \"content\": \"<x>\" } ] }", "added_tokens")]
    public void MalformedFileIsInvalidDataNamingTheFile(string json, string problem)
    {
        string path = _dir.File("tokenizer.json");
        File.WriteAllText(path, json);
        var e = Assert.Throws<InvalidDataException>(() => LlamaTokenizer.FromHuggingFaceJson(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void WriterRejectsMergeWhoseResultIsNotAToken()
    {
        var vocab = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToList();
        Assert.Throws<ArgumentException>(() =>
            HuggingFaceTokenizerJson.Write(_dir.File("tokenizer.json"), vocab, [('a', 'b')]));
    }
}
