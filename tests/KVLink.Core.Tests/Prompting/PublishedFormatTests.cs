using KVLink.Core.Prompting;
using KVLink.Core.Tests.Tokenization;

namespace KVLink.Core.Tests.Prompting;

/// <summary>The published KVLink prompt, byte for byte, on a Llama-3-style tokenizer (cl100k + Llama-3 specials from 128000).</summary>
public class PublishedFormatTests
{
    private static readonly KvLinkDocument[] Docs = [new("Paris is the capital.", "Paris"), new("Lyon is a city.", "Lyon"), new("Nice has a beach.", null)];

    [Fact]
    public void FromTokenizer_on_Llama3_special_tokens_is_the_published_format()
    {
        var f = KvLinkLlama3Format.FromTokenizer(Cl100kTestData.Tokenizer);
        var p = KvLinkLlama3Format.Published;
        Assert.Equal((p.LinkTokenStart, p.LinkTokenIdCount, p.MemStart, p.MemEnd), (f.LinkTokenStart, f.LinkTokenIdCount, f.MemStart, f.MemEnd));
        Assert.Equal((128011, 243, 128254, 128255), (p.LinkTokenStart, p.LinkTokenIdCount, p.MemStart, p.MemEnd));
        Assert.Equal(new[] { 128009, 128001 }, f.StopTokenIds);
        Assert.Equal(p.Name, f.Name);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(5)]
    public void Layout_tokens_segments_and_text_match_the_published_layout(int k)
    {
        var tok = Cl100kTestData.Tokenizer;
        var format = KvLinkLlama3Format.Published;
        var docTokens = Docs.Select((d, j) => format.Document(tok, d, j)).ToList();
        var layout = format.Build(tok, docTokens, "Which city has a beach?", k);

        var expected = new List<int>();
        var segments = new List<int>();
        void Add(IEnumerable<int> ids, int segment) { foreach (var id in ids) { expected.Add(id); segments.Add(segment); } }
        Add(tok.Encode("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + KvLinkLlama3Format.PublishedSystemText +
                       "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"), 0);
        Add([128254], 0);
        for (int j = 0; j < Docs.Length; j++)
        {
            Add(tok.Encode($"Document [{j + 1}](Title: {Docs[j].Title ?? ""}) {Docs[j].Text}\n"), j + 1);
            Add(Enumerable.Range(0, k).Select(t => 128011 + k * j + t), 0);
        }
        Add([128255], 0);
        Add(tok.Encode("Which city has a beach?"), 0);
        Add(tok.Encode("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"), 0);

        Assert.Equal(expected, layout.Tokens);
        Assert.Equal(segments, layout.Segments);
        Assert.Equal(128000, layout.Tokens[0]);
        Assert.Equal(layout.Tokens.ToList().IndexOf(128254) + 1, layout.PrefixLength);
        Assert.Equal(Docs.Length, layout.Documents.Count);
        Assert.Equal(layout.Tokens.Count(t => t >= 128011 && t < 128254), k * Docs.Length);

        string text = tok.Decode(layout.Tokens);
        Assert.StartsWith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a intelligent AI assistant.", text);
        Assert.Contains("<|reserved_special_token_246|>Document [1](Title: Paris) Paris is the capital.\n", text);
        Assert.Contains("Document [3](Title: ) Nice has a beach.\n", text);
        Assert.EndsWith("<|reserved_special_token_247|>Which city has a beach?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", text);
    }
}
