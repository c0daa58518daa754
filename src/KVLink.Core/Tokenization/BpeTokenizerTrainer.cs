using System.Text;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tokenization;

/// <summary>
/// Learns a small byte-level BPE vocabulary from text (words split with the Llama 3 pre-tokenizer, merges chosen by
/// pair frequency) and writes it as a Hugging Face <c>tokenizer.json</c> followed by the 256 Llama-3 special tokens,
/// so a model trained from scratch on a narrow corpus gets short sequences and the KVLink prompt format's tokens.
/// </summary>
internal static class BpeTokenizerTrainer
{
    /// <summary>The learned vocabulary (index = id) and merges (by priority).</summary>
    /// <param name="Vocab">Token bytes: the 256 single bytes, then one token per merge.</param>
    /// <param name="Merges">Pairs of token ids, first applied first.</param>
    public sealed record Result(IReadOnlyList<byte[]> Vocab, IReadOnlyList<(int Left, int Right)> Merges);

    /// <summary>The <c>tokenizer_config.json</c> written next to a trained tokenizer.</summary>
    public const string TokenizerConfigJson = """
        {
          "tokenizer_class": "PreTrainedTokenizerFast",
          "bos_token": "<|begin_of_text|>",
          "eos_token": "<|eot_id|>",
          "add_bos_token": false,
          "model_max_length": 2048
        }
        """;

    /// <summary>Learns up to <paramref name="merges"/> merges from <paramref name="texts"/> (pairs seen fewer than <paramref name="minCount"/> times are not merged).</summary>
    public static Result Train(IEnumerable<string> texts, int merges, int minCount = 2)
    {
        ArgumentNullException.ThrowIfNull(texts);
        // The same splitter the trained tokenizer encodes with, so merges are learnt on the pieces it will see.
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string text in texts)
            foreach (var (offset, length) in Llama3Splitter.Split(text.AsMemory(), 0))
            {
                string piece = text.Substring(offset, length);
                counts[piece] = counts.GetValueOrDefault(piece) + 1;
            }

        var vocab = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).ToList();
        var words = counts.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => (Symbols: Encoding.UTF8.GetBytes(p.Key).Select(b => (int)b).ToList(), Count: p.Value)).ToList();
        var result = new List<(int, int)>();
        for (int round = 0; round < merges; round++)
        {
            var pairs = new Dictionary<(int, int), long>();
            foreach (var (symbols, count) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                {
                    var key = (symbols[i], symbols[i + 1]);
                    pairs[key] = pairs.GetValueOrDefault(key) + count;
                }
            if (pairs.Count == 0) break;
            var best = pairs.OrderByDescending(p => p.Value).ThenBy(p => p.Key.Item1).ThenBy(p => p.Key.Item2).First();
            if (best.Value < minCount) break;
            int id = vocab.Count;
            vocab.Add([.. vocab[best.Key.Item1], .. vocab[best.Key.Item2]]);
            result.Add(best.Key);
            foreach (var (symbols, _) in words)
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (symbols[i] == best.Key.Item1 && symbols[i + 1] == best.Key.Item2)
                    {
                        symbols[i] = id;
                        symbols.RemoveAt(i + 1);
                    }
        }
        return new Result(vocab, result);
    }

    /// <summary>
    /// Writes <paramref name="result"/> as <c>tokenizer.json</c> with the Llama-3 special tokens right after the vocabulary, and a
    /// <c>tokenizer_config.json</c> beside it so Python's <c>AutoTokenizer.from_pretrained</c> loads the folder too.
    /// </summary>
    /// <returns>The total vocabulary size (BPE tokens + 256 special tokens), the model's <c>vocab_size</c>.</returns>
    public static int Write(string path, Result result)
    {
        ArgumentNullException.ThrowIfNull(result);
        HuggingFaceTokenizerJson.Write(path, result.Vocab, result.Merges, Llama3SpecialTokens.Create(firstId: result.Vocab.Count));
        File.WriteAllText(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer_config.json"), TokenizerConfigJson);
        return result.Vocab.Count + Llama3SpecialTokens.Count;
    }
}
