using System.Text.Json;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using Xunit;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>A tiktoken-only checkpoint (original/tokenizer.model) takes its special-token names from the checkpoint,
/// and falls back to the table of the Llama 3 release the checkpoint looks like, saying which.</summary>
public sealed class CheckpointSpecialTokenTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public CheckpointSpecialTokenTests()
    {
        Directory.CreateDirectory(_dir.File("original"));
        using var source = Cl100kTestData.OpenTiktoken();
        using var file = File.Create(_dir.File(Path.Combine("original", "tokenizer.model")));
        source.CopyTo(file);
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Names_come_from_tokenizer_config_added_tokens_decoder()
    {
        WriteConfig(Llama3SpecialTokens.CreateLlama30(), eos: "<|eot_id|>", template: "{{ '<|start_header_id|>' }}");
        var tok = LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        Assert.Contains("added_tokens_decoder", tok.SpecialTokenSource);
        Assert.Equal(128010, tok.TokenToId("<|reserved_special_token_5|>"));
        Assert.Equal([128010], tok.Encode("<|reserved_special_token_5|>"));
        Assert.Null(tok.TokenToId("<|python_tag|>"));
        Assert.True(tok.Encode("<|python_tag|>").Count > 1);
        Assert.Contains("<|eot_id|>", tok.FunctionalTokens[128009]);
        Assert.Equal(KvLinkLlama3Format.Published.Name, KvLinkLlama3Format.FromTokenizer(tok).Name);
    }

    [Fact]
    public void A_reserved_token_the_chat_template_uses_is_functional_and_refused_as_a_link_token()
    {
        var table = Llama3SpecialTokens.Create();
        WriteConfig(table, eos: "<|reserved_special_token_30|>", template: "{{ '<|reserved_special_token_20|>' + message }}");
        var tok = LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        int id = table["<|reserved_special_token_20|>"];
        Assert.Contains("chat template", tok.FunctionalTokens[id]);
        Assert.Contains("eos_token", tok.FunctionalTokens[table["<|reserved_special_token_30|>"]]);
        var e = Assert.Throws<ArgumentException>(() => KvLinkLlama3Format.FromTokenizer(tok));
        Assert.Contains($"id {id}", e.Message);
        Assert.Contains("chat template", e.Message);
    }

    [Theory]
    [InlineData("config.json", "{ \"model_type\": \"llama\", \"rope_scaling\": null }", "3.0", 128005)]
    [InlineData("config.json", "{ \"model_type\": \"llama\", \"rope_scaling\": { \"rope_type\": \"llama3\", \"factor\": 32.0 } }", "3.1/3.2", 128011)]
    [InlineData("original/params.json", "{ \"dim\": 4096 }", "3.0", 128005)]
    [InlineData("original/params.json", "{ \"dim\": 2048, \"use_scaled_rope\": true }", "3.1/3.2", 128011)]
    [InlineData(null, null, "3.1/3.2", 128011)]
    public void Without_names_the_release_table_is_chosen_from_the_checkpoint(string? file, string? content, string release, int reserved3)
    {
        if (file is not null)
            File.WriteAllText(_dir.File(file), content);
        var tok = LlamaTokenizer.FromCheckpointFolder(_dir.Path);
        Assert.Contains($"Llama {release} table", tok.SpecialTokenSource);
        Assert.Contains(file ?? "assumed", tok.SpecialTokenSource);
        Assert.Equal(reserved3, tok.TokenToId("<|reserved_special_token_3|>"));
        Assert.Equal(128009, tok.TokenToId("<|eot_id|>"));
    }

    private void WriteConfig(IReadOnlyDictionary<string, int> specials, string eos, string template)
    {
        var decoder = specials.ToDictionary(p => p.Value.ToString(System.Globalization.CultureInfo.InvariantCulture),
            p => new Dictionary<string, object> { ["content"] = p.Key, ["special"] = true });
        var config = new Dictionary<string, object>
        {
            ["added_tokens_decoder"] = decoder, ["bos_token"] = "<|begin_of_text|>", ["eos_token"] = eos, ["chat_template"] = template,
        };
        File.WriteAllText(_dir.File("tokenizer_config.json"), JsonSerializer.Serialize(config));
    }
}
