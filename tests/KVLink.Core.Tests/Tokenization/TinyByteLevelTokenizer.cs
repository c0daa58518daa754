using System.Text;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Tokenization;

/// <summary>A small byte-level BPE: the 256 byte tokens, a few merges, and two special tokens.</summary>
internal static class TinyByteLevelTokenizer
{
    public const int BeginOfText = 300;
    public const int EotId = 301;

    /// <summary>Merged tokens in merge order (ids follow the 256 byte tokens). Each one is a known token
    /// plus one byte; "日" (E6 97 A5) goes through the byte pair E6 97, which is not text on its own.</summary>
    private static readonly byte[][] Merged =
    [
        "he"u8.ToArray(), "hel"u8.ToArray(), "hell"u8.ToArray(), " w"u8.ToArray(),
        "é"u8.ToArray(), [0xE6, 0x97], "日"u8.ToArray(),
    ];

    public static IReadOnlyDictionary<string, int> Specials { get; } =
        new Dictionary<string, int> { ["<|begin_of_text|>"] = BeginOfText, ["<|eot_id|>"] = EotId };

    /// <summary>Id of a merged token given as text.</summary>
    public static int IdOf(string token)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(token);
        int index = Array.FindIndex(Merged, m => m.AsSpan().SequenceEqual(bytes));
        return index < 0 ? throw new ArgumentException(token) : 256 + index;
    }

    /// <summary>Writes tokenizer.json into <paramref name="dir"/> and returns its path.</summary>
    public static string Write(string dir, bool ignoreMerges = false)
    {
        var vocab = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToList();
        var idByHex = vocab.Select((v, id) => (Convert.ToHexString(v), id)).ToDictionary(p => p.Item1, p => p.id);
        var merges = new List<(int, int)>();
        foreach (byte[] token in Merged)
        {
            merges.Add((idByHex[Convert.ToHexString(token.AsSpan(0, token.Length - 1))], token[^1]));
            idByHex[Convert.ToHexString(token)] = vocab.Count;
            vocab.Add(token);
        }
        string path = Path.Combine(dir, "tokenizer.json");
        HuggingFaceTokenizerJson.Write(path, vocab, merges, Specials, ignoreMerges);
        return path;
    }
}
