using System.Runtime.InteropServices;

namespace KVLink.Core.IO;

/// <summary>
/// Whether a path names a regular file, asked with <c>stat</c> (symbolic links followed) and without opening it:
/// opening a FIFO for reading blocks until a writer appears, and a device such as <c>/dev/zero</c> reads forever,
/// and .NET exposes neither the file type nor a non-blocking open.
/// </summary>
internal static partial class FileKind
{
    // The runtime's own POSIX shim (libSystem.Native, shipped with every .NET on Unix) fills a FileStatus whose
    // first two fields have been (int Flags, int Mode) since .NET Core 1.0, with the type bits normalised to these
    // values on every Unix. The buffer is larger than the struct so a longer struct in a later runtime still fits.
    private const int ModeOffset = 4, StatusBufferBytes = 512;
    private const int TypeMask = 0xF000, RegularType = 0x8000;

    /// <summary>True when <paramref name="path"/>, after following links, is a regular file.</summary>
    /// <exception cref="FileNotFoundException">Nothing exists at the path (or a link is dangling).</exception>
    public static bool IsRegularFile(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            // No FIFOs in the file namespace there; device names are not files.
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found.", path);
            return (File.GetAttributes(path) & (FileAttributes.Device | FileAttributes.Directory)) == 0;
        }
        var status = new byte[StatusBufferBytes];
        if (Stat(path, status) != 0)
        {
            if (Directory.Exists(path)) return false;
            throw new FileNotFoundException($"{path}: file not found.", path);
        }
        return (BitConverter.ToInt32(status, ModeOffset) & TypeMask) == RegularType;
    }

    [LibraryImport("libSystem.Native", EntryPoint = "SystemNative_Stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, [Out] byte[] status);
}
