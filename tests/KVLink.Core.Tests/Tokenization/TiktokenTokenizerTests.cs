using System.Text;
using KVLink.Core.Tokenization;
using Xunit;
using MlTiktokenTokenizer = Microsoft.ML.Tokenizers.TiktokenTokenizer;

namespace KVLink.Core.Tests.Tokenization;

public class TiktokenTokenizerTests
{
    private static LlamaTokenizer Tok => Cl100kTestData.Tokenizer;

    public static TheoryData<string> Texts => new()
    {
        "Hello, world!",
        "Crème brûlée à la française, naïve façade.",
        "日本語のテキストと中文文本。",
        "Emoji: 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦",
        "Line one\nLine two\r\n\n\n  indented\ttab",
        "Numbers 1234567890 3.14159 -42 1e10",
        "  leading and trailing spaces   ",
        "",
    };

    [Theory]
    [MemberData(nameof(Texts))]
    public void RoundTripsTextExactly(string text)
    {
        Assert.Equal(text, Tok.Decode(Tok.Encode(text)));
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void TokenBytesConcatenateToUtf8OfText(string text)
    {
        var bytes = new List<byte>();
        foreach (int id in Tok.Encode(text))
            bytes.AddRange(Tok.TokenBytes(id).ToArray());
        Assert.Equal(Encoding.UTF8.GetBytes(text), bytes.ToArray());
    }

    [Theory]
    [MemberData(nameof(Texts))]
    public void OrdinaryTextMatchesMicrosoftCl100k(string text)
    {
        // Llama 3's split pattern is cl100k's with the contractions written differently, so ids agree.
        var reference = MlTiktokenTokenizer.CreateForEncoding("cl100k_base");
        Assert.Equal(reference.EncodeToIds(text), Tok.Encode(text));
    }

    [Fact]
    public void SpecialTokensInTextStayWhole()
    {
        string text = "<|begin_of_text|>Hi there<|eot_id|>x<|reserved_special_token_5|>";
        var ids = Tok.Encode(text);
        var expected = new List<int> { 128000 };
        expected.AddRange(Tok.Encode("Hi there"));
        expected.Add(128009);
        expected.AddRange(Tok.Encode("x"));
        expected.Add(128013);
        Assert.Equal(expected, ids);
        Assert.Equal(text, Tok.Decode(ids));
        Assert.Equal("<|eot_id|>"u8.ToArray(), Tok.TokenBytes(128009).ToArray());
    }

    [Fact]
    public void ReportsLlama3SpecialTokensAndVocabSize()
    {
        Assert.Equal(128256, Tok.VocabSize);
        Assert.Equal(256, Tok.SpecialTokens.Count);
        Assert.Equal(128009, Tok.TokenToId("<|eot_id|>"));
        Assert.Equal(128004, Tok.TokenToId("<|finetune_right_pad_id|>"));
        Assert.Equal(128011, Tok.TokenToId("<|reserved_special_token_3|>"));
        Assert.Equal(128255, Tok.TokenToId("<|reserved_special_token_247|>"));
        Assert.Null(Tok.TokenToId("<|reserved_special_token_248|>"));
        Assert.Null(Tok.TokenToId("Hello"));
    }

    [Fact]
    public void UnknownIdIsRejected()
    {
        // cl100k's ranks end at 100255; the gap up to 128000 holds no tokens.
        Assert.Throws<ArgumentOutOfRangeException>(() => Tok.Decode([110000]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tok.TokenBytes(128256).Length);
    }

    [Fact]
    public void SpecialTokenSetHasExactLlama3Names()
    {
        var specials = Llama3SpecialTokens.Create();
        Assert.Equal(256, specials.Count);
        Assert.Equal(Enumerable.Range(128000, 256), specials.Values.Order());
        Assert.Equal(128000, specials["<|begin_of_text|>"]);
        Assert.Equal(128001, specials["<|end_of_text|>"]);
        Assert.Equal(128002, specials["<|reserved_special_token_0|>"]);
        Assert.Equal(128003, specials["<|reserved_special_token_1|>"]);
        Assert.Equal(128005, specials["<|reserved_special_token_2|>"]);
        Assert.Equal(128006, specials["<|start_header_id|>"]);
        Assert.Equal(128007, specials["<|end_header_id|>"]);
        Assert.Equal(128008, specials["<|eom_id|>"]);
        Assert.Equal(128010, specials["<|python_tag|>"]);
        Assert.Equal(5 + 9, Llama3SpecialTokens.Create(5)["<|eot_id|>"]);
    }

    [Fact]
    public void MalformedTiktokenFileIsInvalidData()
    {
        using var stream = new MemoryStream("SGVsbG8= 0\nnot-base64!! 1\n"u8.ToArray());
        var e = Assert.Throws<InvalidDataException>(() => LlamaTokenizer.FromTiktoken(stream));
        Assert.Contains("line 2", e.Message);
    }
}
