using Microsoft.Win32.SafeHandles;

namespace KVLink.Core.IO;

/// <summary>
/// Reads files of a checkpoint folder, which may be hostile: only regular files (a symbolic link to one is fine,
/// as in the Hugging Face cache; a link to <c>/dev/zero</c>, a FIFO or a directory is refused before it is opened),
/// and only up to a per-file size cap checked before anything is allocated.
/// </summary>
internal static class UntrustedFile
{
    /// <summary>Cap for small JSON settings files (config.json, kvlink_prompt.json): real ones are a few KiB.</summary>
    public const long SmallJsonMaxBytes = 1L << 20;

    /// <summary>Cap for tokenizer files: Llama 3's tokenizer.json is 9 MiB, the largest common ones about 35 MiB.</summary>
    public const long TokenizerMaxBytes = 64L << 20;

    /// <summary>Opens a regular file for reading (others may read it, or replace it atomically, meanwhile).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">The path is not a regular file; the message names it.</exception>
    public static SafeFileHandle OpenRegular(string path)
    {
        if (!FileKind.IsRegularFile(path))
            throw new InvalidDataException($"{path}: not a regular file (a FIFO, device, socket or directory, or a link to one); only regular files are read.");
        return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
    }

    /// <summary>The whole content of a regular file of at most <paramref name="maxBytes"/> bytes.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="InvalidDataException">Not a regular file, or larger than the cap; the message names the file.</exception>
    public static byte[] ReadAllBytes(string path, long maxBytes)
    {
        using var handle = OpenRegular(path);
        long length = RandomAccess.GetLength(handle);
        if (length > maxBytes)
            throw new InvalidDataException($"{path}: {length} bytes exceeds the {Describe(maxBytes)} limit for this file.");
        // Bounded by the cap, checked above; a file that grows meanwhile is read only up to its earlier length.
        var content = new byte[length];
        int filled = 0;
        while (filled < content.Length)
        {
            int n = RandomAccess.Read(handle, content.AsSpan(filled), filled);
            if (n <= 0) break; // shrank while being read: the parser judges what is there
            filled += n;
        }
        return filled == content.Length ? content : content[..filled];
    }

    private static string Describe(long bytes) => bytes >= 1L << 20 ? $"{bytes >> 20} MiB" : $"{bytes >> 10} KiB";
}
