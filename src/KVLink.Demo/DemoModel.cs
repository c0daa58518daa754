using KVLink.Core.Engine;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Demo;

/// <summary>
/// The small KVLink demo model trained from scratch on the synthetic corpus (<c>models/kvlink-demo</c> in the repository,
/// retrained by <c>dotnet run -c Release --project samples/KVLink.Train -- demo</c>). It answers questions about the fictional
/// people, companies and cities of the synthetic RAG corpus from their documents, and nothing else.
/// </summary>
public static class DemoModel
{
    /// <summary>Folder name of the KVLink-trained demo model.</summary>
    public const string FolderName = "kvlink-demo";

    /// <summary>Folder name of the full-attention baseline it was fine-tuned from.</summary>
    public const string FullAttentionFolderName = "kvlink-demo-full";

    /// <summary>The short system text the demo model was trained with (also stored in its kvlink_prompt.json).</summary>
    public const string SystemText = "Answer the question from the documents.";

    /// <summary>
    /// Finds <c>models/<paramref name="name"/></c>: next to the application (when copied to the output folder), else in the
    /// first parent folder of the application or of the current directory that has it. Null when not found.
    /// </summary>
    public static string? FindFolder(string name = FolderName)
    {
        foreach (string start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "models", name);
                if (File.Exists(Path.Combine(candidate, "config.json"))) return candidate;
            }
        }
        return null;
    }

    /// <summary>
    /// The prompt format of the demo model for its tokenizer: its system text and the slot-free document header
    /// (<see cref="KvLinkLlama3Format.SlotFreeHeader"/>), so one cache per document serves every slot exactly.
    /// </summary>
    public static KvLinkLlama3Format Format(LlamaTokenizer tokenizer) => KvLinkLlama3Format.FromTokenizer(tokenizer, SystemText).WithSlotFreeHeader();

    /// <summary>
    /// Opens an engine on a checkpoint folder (default: the demo model) with <c>KvLinkEngine.LoadAsync</c>,
    /// which takes the folder's prompt settings (<see cref="PromptSettingsFile"/>) unless <paramref name="options"/> sets a PromptFormat.
    /// The engine owns the model.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">No folder given and the demo model was not found.</exception>
    public static Task<KvLinkEngine> LoadEngineAsync(string? folder = null, KvLinkOptions? options = null, CancellationToken cancellationToken = default)
    {
        folder ??= FindFolder() ?? throw new DirectoryNotFoundException($"models/{FolderName} was not found above {AppContext.BaseDirectory} or {Directory.GetCurrentDirectory()}.");
        return KvLinkEngine.LoadAsync(folder, options, cancellationToken: cancellationToken);
    }
}
