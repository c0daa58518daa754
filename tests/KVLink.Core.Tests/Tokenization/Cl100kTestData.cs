using System.IO.Compression;
using System.Reflection;
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

    /// <summary>One tokenizer for all tests: building it parses 100k ranks.</summary>
    public static LlamaTokenizer Tokenizer => Shared.Value;

    public static Stream OpenTiktoken()
    {
        var assembly = Assembly.Load("Microsoft.ML.Tokenizers.Data.Cl100kBase");
        string name = assembly.GetManifestResourceNames().Single(n => n.Contains("cl100k_base.tiktoken", StringComparison.Ordinal));
        Stream resource = assembly.GetManifestResourceStream(name)!;
        if (!name.EndsWith(".deflate", StringComparison.Ordinal))
            return resource;
        var plain = new MemoryStream();
        using (var inflate = new DeflateStream(resource, CompressionMode.Decompress))
            inflate.CopyTo(plain);
        plain.Position = 0;
        return plain;
    }
}
