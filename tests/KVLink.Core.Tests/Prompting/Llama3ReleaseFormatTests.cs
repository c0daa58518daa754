using KVLink.Demo;
using KVLink.Core.Prompting;
using KVLink.Core.Tests.Tokenization;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Prompting;

/// <summary>Issue #15: Llama 3.0 and 3.1/3.2 name the reserved special tokens differently; the format must use the
/// published ids on both and refuse ids that would land on functional tokens.</summary>
public class Llama3ReleaseFormatTests
{
    public static TheoryData<string> Releases => new() { "3.0", "3.1" };

    private static LlamaTokenizer Tokenizer(string release) =>
        release == "3.0" ? Cl100kTestData.Llama30Tokenizer : Cl100kTestData.Tokenizer;

    [Theory]
    [MemberData(nameof(Releases))]
    public void FromTokenizer_uses_the_published_ids_on_either_release(string release)
    {
        var f = KvLinkLlama3Format.FromTokenizer(Tokenizer(release));
        Assert.Equal((128011, 243, 128254, 128255), (f.LinkTokenStart, f.LinkTokenIdCount, f.MemStart, f.MemEnd));
        Assert.Equal(new[] { 128009, 128001 }, f.StopTokenIds);
        Assert.Equal(KvLinkLlama3Format.Published.Name, f.Name);
        KvLinkLlama3Format.Published.Validate(Tokenizer(release));
    }

    [Fact]
    public void The_two_tables_differ_where_the_issue_says()
    {
        var v30 = Llama3SpecialTokens.CreateLlama30();
        var v31 = Llama3SpecialTokens.Create();
        Assert.Equal(128005, v30["<|reserved_special_token_3|>"]);
        Assert.Equal(128011, v31["<|reserved_special_token_3|>"]);
        Assert.Equal(["<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>", "<|reserved_special_token_5|>"],
            Enumerable.Range(128006, 5).Select(id => v30.Single(p => p.Value == id).Key));
        Assert.Equal(128255, v30["<|reserved_special_token_250|>"]);
        Assert.Equal(Enumerable.Range(128000, 256), v30.Values.Order());
        Assert.DoesNotContain("<|python_tag|>", v30.Keys);
    }

    [Fact]
    public void Name_derivation_on_Llama30_names_is_refused_naming_the_colliding_token()
    {
        var e = Assert.Throws<ArgumentException>(() => KvLinkLlama3Format.FromReservedTokenNames(Cl100kTestData.Llama30Tokenizer));
        Assert.Contains("id 128006", e.Message);
        Assert.Contains("<|start_header_id|>", e.Message);
        Assert.Contains("KvLinkOptions.PromptFormat", e.Message);
    }

    [Fact]
    public void Name_derivation_on_Llama31_names_gives_the_published_ids()
    {
        var f = KvLinkLlama3Format.FromReservedTokenNames(Cl100kTestData.Tokenizer);
        Assert.Equal(KvLinkLlama3Format.Published.Name, f.Name);
    }

    [Theory]
    [InlineData(128000, 128254, 128255, "id 128000", "<|begin_of_text|>")]
    [InlineData(128011, 128009, 128255, "id 128009", "<|eot_id|>")]
    [InlineData(128011, 128254, 110000, "id 110000", "not a token")]
    [InlineData(128011, 128254, 128254, "id 128254", "also <mem_start>")]
    [InlineData(128011, 128012, 128255, "id 128012", "also link-token id 1")]
    public void An_explicit_format_is_checked_against_the_tokenizer(int linkStart, int memStart, int memEnd, string id, string collision)
    {
        var format = new KvLinkLlama3Format("S", linkStart, 10, memStart, memEnd, [128009, 128001]);
        var e = Assert.Throws<ArgumentException>(() => format.Validate(Cl100kTestData.Tokenizer));
        Assert.Contains(id, e.Message);
        Assert.Contains(collision, e.Message);
    }

    [Fact]
    public void The_demo_model_keeps_its_own_ids()
    {
        string folder = DemoModel.FindFolder() ?? throw new DirectoryNotFoundException("models/kvlink-demo");
        var tok = LlamaTokenizer.FromCheckpointFolder(folder);
        Assert.Equal(1782, tok.VocabSize);
        var f = DemoModel.Format(tok);
        Assert.Equal((1537, 243, 1780, 1781), (f.LinkTokenStart, f.LinkTokenIdCount, f.MemStart, f.MemEnd));
        Assert.Equal(new[] { 1535, 1527 }, f.StopTokenIds);
        Assert.Contains(1535, tok.FunctionalTokens.Keys); // <|eot_id|>, also its eos_token
    }
}
