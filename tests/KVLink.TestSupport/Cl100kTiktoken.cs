using System.IO.Compression;
using System.Reflection;

namespace KVLink.TestSupport;

/// <summary>cl100k_base ranks shipped (deflated) inside Microsoft.ML.Tokenizers.Data.Cl100kBase: a real-size
/// stand-in for Llama 3's tiktoken file, for the tokenizer tests and the tokenizer throughput benchmark.</summary>
internal static class Cl100kTiktoken
{
    /// <summary>The tiktoken ranks as a readable stream (inflated when the package ships them deflated).</summary>
    public static Stream Open()
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
