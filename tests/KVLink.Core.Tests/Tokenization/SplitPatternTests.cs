using System.Text.Json.Nodes;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>Found by the 10,000-input tokenizer.json mutation run: a split pattern that can match the empty string
/// loaded, and then Encode never returned (the pre-tokenizer restarts at the end of each match). Now refused at load.</summary>
public sealed class SplitPatternTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(@"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}2+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")] // the mutant
    [InlineData(@"\p{L}*")]
    [InlineData(@"\p{L}+|(?=\s)")]
    [InlineData(@"\p{L}+|\p{N}+|\s+|(?<=\p{L})")]
    [InlineData(@"x?")]
    public async Task A_split_pattern_that_matches_the_empty_string_is_refused_at_load(string pattern)
    {
        string path = WriteWithPattern(pattern);
        var e = await Assert.ThrowsAsync<InvalidDataException>(() =>
            Task.Run(() => HuggingFaceTokenizerJsonReader.Load(path).Encode("hello wörld 日本 12 !")).WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("empty string", e.Message);
        Assert.Contains("tokenizer.json", e.Message);
    }

    [Theory]
    [InlineData(PreTokenizerPatterns.Llama3)]
    [InlineData(PreTokenizerPatterns.Gpt2)]
    public void The_real_split_patterns_load_and_encode(string pattern)
    {
        var tokenizer = HuggingFaceTokenizerJsonReader.Load(WriteWithPattern(pattern));
        Assert.Equal("hello wörld 日本 12 !", tokenizer.Decode(tokenizer.Encode("hello wörld 日本 12 !")));
    }

    private string WriteWithPattern(string pattern)
    {
        string path = TinyByteLevelTokenizer.Write(_dir.Path);
        var root = JsonNode.Parse(File.ReadAllText(path))!;
        root["pre_tokenizer"]!["pretokenizers"]![0]!["pattern"]!["Regex"] = pattern;
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }
}
