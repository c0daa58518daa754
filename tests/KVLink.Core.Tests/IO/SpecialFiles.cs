using System.Runtime.InteropServices;

namespace KVLink.Core.Tests.IO;

/// <summary>Makes the hostile non-regular files of issue #19: a FIFO (opening it for reading blocks) and a link to /dev/zero.</summary>
internal static class SpecialFiles
{
    /// <summary>FIFOs and /dev/zero exist only on Unix; the tests that need them pass trivially elsewhere.</summary>
    public static bool Supported => !OperatingSystem.IsWindows() && File.Exists("/dev/zero");

    public static void MakeFifo(string path)
    {
        if (mkfifo(path, 0b110_100_100) != 0)
            throw new IOException($"mkfifo {path} failed with errno {Marshal.GetLastPInvokeError()}");
    }

    public static void LinkToDevZero(string path) => File.CreateSymbolicLink(path, "/dev/zero");

    /// <summary>Replaces <paramref name="path"/> (if present) with the named kind of special file.</summary>
    public static void Make(string path, string kind)
    {
        if (File.Exists(path) || Directory.Exists(path)) File.Delete(path);
        if (kind == "fifo") MakeFifo(path);
        else LinkToDevZero(path);
    }

    /// <summary>Bounds a call that would block forever if a FIFO were opened, so a regression fails instead of hanging.</summary>
    public static Task<T> Bounded<T>(Func<T> call) => Task.Run(call).WaitAsync(TimeSpan.FromSeconds(30));

    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo(string path, uint mode);
}
