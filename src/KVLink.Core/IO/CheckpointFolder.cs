namespace KVLink.Core.IO;

/// <summary>The first check on a checkpoint folder, shared by every loader so a wrong path reads the same everywhere.</summary>
internal static class CheckpointFolder
{
    /// <summary>
    /// Throws when <paramref name="folder"/> does not exist. The message names the full path and, for a relative path, the
    /// working directory it was resolved from: a relative model path in a sample resolves from where <c>dotnet run</c>
    /// runs, not from the project, and "no tokenizer" would hide that.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    public static void ThrowIfMissing(string folder)
    {
        if (Directory.Exists(folder)) return;
        string full = Path.GetFullPath(folder);
        string relative = Path.IsPathRooted(folder) ? "" : $" (the relative path '{folder}' resolved from the current directory '{Directory.GetCurrentDirectory()}')";
        string what = File.Exists(folder) ? "is a file, not a folder" : "does not exist";
        throw new DirectoryNotFoundException($"Checkpoint folder '{full}'{relative} {what}.");
    }
}
