using Microsoft.Win32.SafeHandles;

namespace KVLink.Core.Caching;

/// <summary>Random-access bytes to parse a cache from: a file handle or a buffer. Reads past the end fail.</summary>
internal abstract class ByteSource
{
    public abstract long Length { get; }

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/>.</summary>
    /// <exception cref="KvCacheFormatException">The source ends first.</exception>
    public abstract void Read(Span<byte> destination, long offset);

    public static ByteSource Of(ReadOnlyMemory<byte> bytes) => new Buffer(bytes);
    public static ByteSource Of(SafeFileHandle handle) => new File(handle);

    private sealed class Buffer(ReadOnlyMemory<byte> bytes) : ByteSource
    {
        public override long Length => bytes.Length;

        public override void Read(Span<byte> destination, long offset)
        {
            if (offset < 0 || offset + destination.Length > bytes.Length) throw new KvCacheFormatException($"unexpected end of data at offset {offset}");
            bytes.Span.Slice((int)offset, destination.Length).CopyTo(destination);
        }
    }

    private sealed class File(SafeFileHandle handle) : ByteSource
    {
        private readonly long _length = RandomAccess.GetLength(handle);

        public override long Length => _length;

        public override void Read(Span<byte> destination, long offset)
        {
            while (!destination.IsEmpty)
            {
                int n = RandomAccess.Read(handle, destination, offset);
                if (n <= 0) throw new KvCacheFormatException($"unexpected end of file at offset {offset}");
                destination = destination[n..];
                offset += n;
            }
        }
    }
}
