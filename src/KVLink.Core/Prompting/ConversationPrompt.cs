namespace KVLink.Core.Prompting;

/// <summary>One finished exchange of a conversation: what the user asked and what the assistant answered.</summary>
internal sealed record ChatTurn(string User, string Assistant);

/// <summary>
/// The text of a conversation as the prompt lays it out: the system content the caller adds (null: the format's own
/// system text only), the finished turns in order, and the question being asked now. A one-shot request is a
/// conversation with no turns and no system content.
/// </summary>
internal sealed record ConversationPrompt(string? SystemText, IReadOnlyList<ChatTurn> History, string Question)
{
    /// <summary>A single question, no history.</summary>
    public static ConversationPrompt Single(string question) => new(null, [], question);

    /// <summary>True for a single question with no added system content.</summary>
    public bool IsSingle => SystemText is null && History.Count == 0;
}
