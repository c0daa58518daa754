using System.Buffers.Binary;
using System.Text;

namespace KVLink.Core.Tests.SafeTensors;

/// <summary>Builds safetensors files byte by byte, independent of the writer under test.</summary>
internal static class RawFile
{
    public static byte[] Build(string headerJson, byte[] data) => Build((ulong)Encoding.UTF8.GetByteCount(headerJson), Encoding.UTF8.GetBytes(headerJson), data);

    public static byte[] Build(ulong declaredHeaderLength, byte[] header, byte[] data)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredHeaderLength);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    public static string Write(TempFolder folder, string name, byte[] bytes)
    {
        string path = folder.File(name);
        System.IO.File.WriteAllBytes(path, bytes);
        return path;
    }
}
