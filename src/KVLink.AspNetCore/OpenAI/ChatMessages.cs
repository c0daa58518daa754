using System.Text.Json;
using Microsoft.Extensions.AI;

namespace KVLink.AspNetCore;

/// <summary>
/// The <c>messages</c> array: objects with a <c>role</c> (system, developer, user, assistant) and text <c>content</c>
/// (a string or an array of text parts). Tool calls, tool results and non-text parts are refused by name.
/// </summary>
internal static class ChatMessages
{
    public static List<ChatMessage> Read(JsonElement list)
    {
        if (list.GetArrayLength() == 0) throw OpenAIRequestException.Invalid("messages", "'messages' must not be empty.");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var m in list.EnumerateArray())
        {
            string at = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw OpenAIRequestException.Invalid("messages", $"{at} must be an object with a role and content.");
            foreach (var field in m.EnumerateObject())
                if (field.Name is not ("role" or "content" or "name") && field.Value.ValueKind != JsonValueKind.Null)
                    throw OpenAIRequestException.Invalid("messages", $"{at}.{field.Name} is not supported by this server.", "unsupported_parameter");
            var fields = new JsonFields(m);
            string role = fields.String("role", "messages") ?? throw OpenAIRequestException.Invalid("messages", $"{at} needs a role.");
            var chatRole = role switch
            {
                "system" or "developer" => ChatRole.System,
                "user" => ChatRole.User,
                "assistant" => ChatRole.Assistant,
                _ => throw OpenAIRequestException.Invalid("messages", $"{at} has role '{role}', which this server does not support (system, developer, user, assistant)."),
            };
            fields.String("name", "messages");
            messages.Add(new ChatMessage(chatRole, Content(m, at)));
        }
        return messages;
    }

    private static string Content(JsonElement message, string at)
    {
        if (!message.TryGetProperty("content", out var content)) return "";
        switch (content.ValueKind)
        {
            case JsonValueKind.Null: return "";
            case JsonValueKind.String: return content.GetString()!;
            case JsonValueKind.Array:
                var text = new System.Text.StringBuilder();
                foreach (var part in content.EnumerateArray())
                {
                    if (part.ValueKind != JsonValueKind.Object) throw OpenAIRequestException.Invalid("messages", $"{at}.content must hold objects with a type and text.");
                    var fields = new JsonFields(part);
                    string? type = fields.String("type", "messages");
                    if (type != "text") throw OpenAIRequestException.Invalid("messages", $"{at}.content has a part of type '{type}'; only text parts are supported.");
                    text.Append(fields.String("text", "messages"));
                }
                return text.ToString();
            default:
                throw OpenAIRequestException.Invalid("messages", $"{at}.content must be a string or an array of text parts.");
        }
    }
}
