namespace KVLink.Core.Tokenization;

/// <summary>The 256 special tokens of Llama 3.1/3.2, which sit right after the 128,000 BPE ranks.</summary>
public static class Llama3SpecialTokens
{
    /// <summary>Number of special tokens in the Llama 3 block.</summary>
    public const int Count = 256;

    /// <summary>Id of the first special token in a real Llama 3 vocabulary.</summary>
    public const int DefaultFirstId = 128000;

    // The named slots, in order; the remaining slots are reserved_special_token_2.. but the
    // numbering is not contiguous with the slot index (0, 1 and 2 are interleaved with named ones).
    private static readonly string[] Leading =
    [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|reserved_special_token_2|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
    ];

    /// <summary>Builds the name to id map of the Llama 3.1/3.2 special tokens.</summary>
    /// <param name="firstId">Id of <c>&lt;|begin_of_text|&gt;</c>; the others follow contiguously.
    /// Tests place the block on top of a smaller vocabulary such as cl100k.</param>
    public static IReadOnlyDictionary<string, int> Create(int firstId = DefaultFirstId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstId);
        var map = new Dictionary<string, int>(Count, StringComparer.Ordinal);
        for (int i = 0; i < Leading.Length; i++)
            map.Add(Leading[i], firstId + i);
        // Slot 11 is reserved_special_token_3, slot 255 is reserved_special_token_247.
        for (int slot = Leading.Length; slot < Count; slot++)
            map.Add($"<|reserved_special_token_{slot - Leading.Length + 3}|>", firstId + slot);
        return map;
    }
}
