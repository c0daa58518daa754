using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>cl100k_base ranks shipped (deflated) inside Microsoft.ML.Tokenizers.Data.Cl100kBase, used as a
/// real-size stand-in for Llama 3's tiktoken file, with the Llama 3 specials placed from 128000.</summary>
internal static class Cl100kTestData
{
    private static readonly Lazy<LlamaTokenizer> Shared = new(() =>
    {
        using var stream = OpenTiktoken();
        return LlamaTokenizer.FromTiktoken(stream, Llama3SpecialTokens.Create(128000));
    });

    private static readonly Lazy<LlamaTokenizer> SharedLlama30 = new(() =>
    {
        using var stream = OpenTiktoken();
        return LlamaTokenizer.FromTiktoken(stream, Llama3SpecialTokens.CreateLlama30(128000));
    });

    /// <summary>One tokenizer for all tests (Llama 3.1/3.2 special-token names): building it parses 100k ranks.</summary>
    public static LlamaTokenizer Tokenizer => Shared.Value;

    /// <summary>The same ranks with the Llama 3.0 special-token names (Meta-Llama-3-8B's tokenizer.json).</summary>
    public static LlamaTokenizer Llama30Tokenizer => SharedLlama30.Value;

    public static Stream OpenTiktoken() => KVLink.TestSupport.Cl100kTiktoken.Open();
}
