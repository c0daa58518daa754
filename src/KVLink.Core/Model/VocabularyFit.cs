using KVLink.Core.Tokenization;

namespace KVLink.Core.Model;

/// <summary>
/// Where a tokenizer and a model meet: every id the tokenizer can produce must be a row of the model's embedding,
/// or the first request fails deep in LibTorch with "index out of range in self" instead of at load.
/// </summary>
internal static class VocabularyFit
{
    /// <summary>Throws unless the tokenizer's largest id is below the model's <c>vocab_size</c>.</summary>
    /// <exception cref="InvalidDataException">The tokenizer has ids the embedding lacks; the message gives both numbers.</exception>
    public static void Ensure(LlamaTokenizer tokenizer, LlamaConfig config)
    {
        if (tokenizer.VocabSize > config.VocabSize)
            throw new InvalidDataException(
                $"The tokenizer has token ids up to {tokenizer.VocabSize - 1}, but the model's embedding has {config.VocabSize} rows " +
                $"(config.json vocab_size {config.VocabSize}): every token id must be below vocab_size. Are tokenizer and model from the same checkpoint?");
    }
}
