using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace KVLink.Core.IO;

/// <summary>
/// Opens a file for reading only if it is a regular file, without ever blocking. A plain open of a FIFO placed
/// under an entry's name waits for a writer forever, and a symlink could point anywhere; both are misses.
/// On Linux the file is opened with O_NONBLOCK | O_NOFOLLOW and its type checked on the open descriptor (statx),
/// so nothing swapped in between a check and the open can slip through; elsewhere symlinks are refused by a check
/// of the name before a plain open.
/// </summary>
internal static partial class RegularFile
{
    private const int ENOENT = 2, ENOTDIR = 20, ELOOP = 40;
    private const int AT_EMPTY_PATH = 0x1000, STATX_TYPE = 0x1;
    private const int S_IFMT = 0xF000, S_IFREG = 0x8000;

    /// <summary>The open handle, or null when the name is not a regular file (FIFO, socket, device, directory, symlink).</summary>
    /// <exception cref="FileNotFoundException">Nothing has that name.</exception>
    /// <exception cref="IOException">The open failed for another reason.</exception>
    public static SafeFileHandle? OpenRead(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            if (new FileInfo(path).LinkTarget is not null) return null;
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        }
        int fd = Open(path, OpenFlags(), 0);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno is ENOENT or ENOTDIR) throw new FileNotFoundException("No such file.", path);
            if (errno == ELOOP) return null; // O_NOFOLLOW refused a symlink
            throw new IOException($"open failed (errno {errno}).", errno);
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        Span<byte> stat = stackalloc byte[256];
        if (Statx(fd, "", AT_EMPTY_PATH, STATX_TYPE, ref MemoryMarshal.GetReference(stat)) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw new IOException($"statx failed (errno {errno}).", errno);
        }
        // struct statx: __u16 stx_mode at byte 28, the same on every architecture.
        int mode = BitConverter.ToUInt16(stat[28..30]);
        if ((mode & S_IFMT) == S_IFREG) return handle;
        handle.Dispose();
        return null;
    }

    /// <summary>O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC; O_NOFOLLOW has another value on the Arm ABIs.</summary>
    private static int OpenFlags()
    {
        const int O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
        int noFollow = RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x8000 : 0x20000;
        return O_NONBLOCK | O_CLOEXEC | noFollow;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, ref byte buffer);
}
