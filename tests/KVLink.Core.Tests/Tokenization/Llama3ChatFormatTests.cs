using KVLink.Core.Tokenization;
using Xunit;

namespace KVLink.Core.Tests.Tokenization;

public class Llama3ChatFormatTests
{
    [Fact]
    public void SystemAndUserMessagesAreExact()
    {
        string prompt = Llama3ChatFormat.BeginOfTextToken
            + Llama3ChatFormat.Message("system", "You are a helpful assistant.")
            + Llama3ChatFormat.Message("user", "What is 2+2?")
            + Llama3ChatFormat.Header("assistant");
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n",
            prompt);
    }

    [Fact]
    public void IdsMatchTheLlama3SpecialTokenBlock()
    {
        var specials = Llama3SpecialTokens.Create();
        Assert.Equal(Llama3ChatFormat.Ids.BeginOfText, specials[Llama3ChatFormat.BeginOfTextToken]);
        Assert.Equal(Llama3ChatFormat.Ids.EndOfText, specials[Llama3ChatFormat.EndOfTextToken]);
        Assert.Equal(Llama3ChatFormat.Ids.StartHeader, specials[Llama3ChatFormat.StartHeaderToken]);
        Assert.Equal(Llama3ChatFormat.Ids.EndHeader, specials[Llama3ChatFormat.EndHeaderToken]);
        Assert.Equal(Llama3ChatFormat.Ids.EotId, specials[Llama3ChatFormat.EotToken]);
    }

    [Fact]
    public void EncodedMessageStartsAndEndsWithChatTokenIds()
    {
        var tok = Cl100kTestData.Tokenizer;
        var ids = tok.Encode(Llama3ChatFormat.BeginOfTextToken + Llama3ChatFormat.Message("user", "Hi"));
        Assert.Equal([128000, 128006], ids.Take(2));
        Assert.Equal(128007, ids[3]);
        Assert.Equal(128009, ids[^1]);
        Assert.Equal(tok.Encode("user"), ids.Skip(2).Take(1));
    }
}
