namespace KVLink.Core.Tokenization;

/// <summary>The 256 special tokens of Llama 3, which sit right after the 128,000 BPE ranks. Their names differ
/// between releases: Llama 3.0 calls 128005 <c>&lt;|reserved_special_token_3|&gt;</c>, Llama 3.1/3.2 use that id
/// for another reserved token and call 128011 <c>&lt;|reserved_special_token_3|&gt;</c>.</summary>
internal static class Llama3SpecialTokens
{
    /// <summary>Number of special tokens in the Llama 3 block.</summary>
    public const int Count = 256;

    /// <summary>Id of the first special token in a real Llama 3 vocabulary.</summary>
    public const int DefaultFirstId = 128000;

    // The named tokens of each release, in order; the remaining ids are reserved_special_token_N with N counting on
    // from the last reserved name here (the numbering is not the offset from the first id).
    private static readonly string[] Leading31 =
    [
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
        "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    ];

    private static readonly string[] Leading30 =
    [
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
        "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
        "<|reserved_special_token_4|>", "<|eot_id|>",
    ];

    /// <summary>Names of the special tokens with a job in Llama 3 releases (text boundaries, chat headers, end of
    /// turn or message, tool calls, padding, images). A prompt format must never use them as link tokens or markers.</summary>
    public static IReadOnlySet<string> FunctionalNames { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>",
        "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
    };

    /// <summary>Builds the name to id map of the Llama 3.1/3.2 special tokens.</summary>
    /// <param name="firstId">Id of <c>&lt;|begin_of_text|&gt;</c>; the others follow contiguously.
    /// Tests place the block on top of a smaller vocabulary such as cl100k.</param>
    public static IReadOnlyDictionary<string, int> Create(int firstId = DefaultFirstId) => Build(Leading31, 3, firstId);

    /// <summary>Builds the name to id map of the Llama 3.0 special tokens (Meta-Llama-3-8B and -70B).</summary>
    /// <param name="firstId">Id of <c>&lt;|begin_of_text|&gt;</c>; the others follow contiguously.</param>
    public static IReadOnlyDictionary<string, int> CreateLlama30(int firstId = DefaultFirstId) => Build(Leading30, 5, firstId);

    private static Dictionary<string, int> Build(string[] leading, int nextReserved, int firstId)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(firstId);
        var map = new Dictionary<string, int>(Count, StringComparer.Ordinal);
        for (int i = 0; i < leading.Length; i++)
            map.Add(leading[i], firstId + i);
        for (int i = leading.Length; i < Count; i++)
            map.Add($"<|reserved_special_token_{i - leading.Length + nextReserved}|>", firstId + i);
        return map;
    }
}
