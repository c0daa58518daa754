using Microsoft.Extensions.AI;

namespace KVLink.Core.Prompting;

/// <summary>
/// Reads a Microsoft.Extensions.AI message list as a KVLink conversation: system messages (and the caller's instructions)
/// become the system content; then user and assistant messages alternate, starting with a user message and ending with
/// the user message being answered. Consecutive messages of one role are joined with a blank line. Anything the prompt
/// cannot carry (tool messages, images, function calls) is refused with a clear error rather than dropped.
/// </summary>
internal static class ChatTranscript
{
    public static ConversationPrompt Read(IEnumerable<ChatMessage> messages, string? instructions = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var system = new List<string>();
        var turns = new List<(ChatRole Role, string Text)>();
        int index = -1;
        foreach (var m in messages)
        {
            index++;
            ArgumentNullException.ThrowIfNull(m, nameof(messages));
            foreach (var content in m.Contents)
                if (content is not TextContent and not UsageContent and not TextReasoningContent)
                    throw new NotSupportedException($"Message #{index} ({m.Role}) holds {content.GetType().Name}; the KVLink chat client takes text only.");
            string text = m.Text;
            if (m.Role == ChatRole.System)
            {
                if (turns.Count > 0) throw new ArgumentException($"Message #{index} is a system message after the conversation started; put system messages first.", nameof(messages));
                if (!string.IsNullOrWhiteSpace(text)) system.Add(text);
            }
            else if (m.Role == ChatRole.User || m.Role == ChatRole.Assistant)
            {
                if (turns.Count == 0 && m.Role == ChatRole.Assistant)
                    throw new ArgumentException($"Message #{index} is an assistant message before any user message; a KVLink conversation starts with the user.", nameof(messages));
                if (turns.Count > 0 && turns[^1].Role == m.Role) turns[^1] = (m.Role, turns[^1].Text + "\n\n" + text);
                else turns.Add((m.Role, text));
            }
            else throw new NotSupportedException($"Message #{index} has role '{m.Role}'; the KVLink chat client takes system, user and assistant messages (no tools).");
        }
        if (!string.IsNullOrWhiteSpace(instructions)) system.Add(instructions);
        if (turns.Count == 0 || turns[^1].Role != ChatRole.User)
            throw new ArgumentException("The conversation must end with a user message: the last user message is the question.", nameof(messages));
        if (string.IsNullOrWhiteSpace(turns[^1].Text)) throw new ArgumentException("The last user message has no text.", nameof(messages));
        var history = new List<ChatTurn>();
        for (int i = 0; i + 1 < turns.Count; i += 2) history.Add(new ChatTurn(turns[i].Text, turns[i + 1].Text));
        return new ConversationPrompt(system.Count == 0 ? null : string.Join("\n\n", system), history, turns[^1].Text);
    }
}
