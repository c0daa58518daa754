namespace KVLink.Core.Tokenization;

/// <summary>The Llama 3 chat template, byte for byte: each message is
/// <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content}&lt;|eot_id|&gt;</c>.</summary>
/// <remarks>Building prompts from these pieces (rather than a Jinja template) keeps every segment's
/// text stable, which matters when KV caches of segments are reused.</remarks>
internal static class Llama3ChatFormat
{
    /// <summary>Text of the beginning-of-text token; prepended once, before the first message.</summary>
    public const string BeginOfTextToken = "<|begin_of_text|>";
    /// <summary>Text of the end-of-text token.</summary>
    public const string EndOfTextToken = "<|end_of_text|>";
    /// <summary>Text of the token that opens a role header.</summary>
    public const string StartHeaderToken = "<|start_header_id|>";
    /// <summary>Text of the token that closes a role header.</summary>
    public const string EndHeaderToken = "<|end_header_id|>";
    /// <summary>Text of the end-of-turn token that closes every message.</summary>
    public const string EotToken = "<|eot_id|>";

    /// <summary>Ids of the chat tokens in the Llama 3.1/3.2 vocabulary.</summary>
    public static class Ids
    {
        /// <summary><c>&lt;|begin_of_text|&gt;</c>.</summary>
        public const int BeginOfText = 128000;
        /// <summary><c>&lt;|end_of_text|&gt;</c>.</summary>
        public const int EndOfText = 128001;
        /// <summary><c>&lt;|start_header_id|&gt;</c>.</summary>
        public const int StartHeader = 128006;
        /// <summary><c>&lt;|end_header_id|&gt;</c>.</summary>
        public const int EndHeader = 128007;
        /// <summary><c>&lt;|eot_id|&gt;</c>.</summary>
        public const int EotId = 128009;
    }

    /// <summary>The header that opens a message: <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n</c>.</summary>
    public static string Header(string role)
    {
        ArgumentNullException.ThrowIfNull(role);
        return StartHeaderToken + role + EndHeaderToken + "\n\n";
    }

    /// <summary>A complete message: header, content, then <c>&lt;|eot_id|&gt;</c>.</summary>
    public static string Message(string role, string content)
    {
        ArgumentNullException.ThrowIfNull(content);
        return Header(role) + content + EotToken;
    }
}
