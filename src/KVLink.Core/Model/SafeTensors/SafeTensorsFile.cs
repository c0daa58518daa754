using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;
using TorchSharp;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>
/// A safetensors file opened for reading. The file is treated as untrusted: <see cref="Open"/> validates
/// the whole header before anything else is allocated, so no input can make a read allocate more than
/// the file's size. The file handle stays open until <see cref="Dispose"/>.
/// </summary>
internal sealed class SafeTensorsFile : IDisposable
{
    /// <summary>Largest header accepted; real headers are a few hundred KiB even for 400B-parameter models.</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly SafeFileHandle _handle;
    private readonly long _dataStart;

    private SafeTensorsFile(string path, SafeFileHandle handle, long dataStart, SafeTensorsHeader header)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Tensors = header.Tensors;
        Metadata = header.Metadata;
    }

    /// <summary>The path the file was opened from.</summary>
    public string Path { get; }

    /// <summary>Tensor entries by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    /// <summary>The <c>__metadata__</c> string map; empty when the file has none.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <exception cref="InvalidDataException">The file is not a valid safetensors file, or not a regular file; the message names it.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static SafeTensorsFile Open(string path)
    {
        // A FIFO would block the open and a device would read forever: only regular files are opened.
        // FileShare.Delete lets a writer atomically replace the file while it is open (needed on Windows).
        var handle = IO.UntrustedFile.OpenRegular(path);
        try
        {
            long length = RandomAccess.GetLength(handle);
            if (length < 8) throw SafeTensorsHeader.Bad(path, $"file is {length} bytes, shorter than the 8-byte header length");

            Span<byte> prefix = stackalloc byte[8];
            ReadExactly(handle, prefix, 0, path);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength == 0) throw SafeTensorsHeader.Bad(path, "header length is 0");
            if (headerLength > MaxHeaderBytes)
                throw SafeTensorsHeader.Bad(path, $"header length {headerLength} exceeds the 100 MiB limit");
            if ((long)headerLength > length - 8)
                throw SafeTensorsHeader.Bad(path, $"header length {headerLength} is larger than the file ({length} bytes)");

            // Bounded by both the file size and the 100 MiB cap, checked just above.
            var json = new byte[(int)headerLength];
            ReadExactly(handle, json, 8, path);
            long dataStart = 8 + (long)headerLength;
            var header = SafeTensorsHeader.Parse(json, length - dataStart, path);
            return new SafeTensorsFile(path, handle, dataStart, header);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads a tensor into a new CPU tensor of its stored dtype and shape.</summary>
    /// <exception cref="KeyNotFoundException">The file has no tensor of that name.</exception>
    /// <exception cref="InvalidDataException">The file became shorter than its header says.</exception>
    public torch.Tensor Read(string name) => Read(name, TensorMemory.DefaultChunkBytes);

    /// <summary>As <see cref="Read(string)"/>, filling the tensor in chunks of at most <paramref name="maxChunkBytes"/>.</summary>
    internal torch.Tensor Read(string name, long maxChunkBytes)
    {
        ObjectDisposedException.ThrowIf(_handle.IsClosed, this);
        if (!Tensors.TryGetValue(name, out var info))
            throw new KeyNotFoundException($"{Path}: no tensor named '{name}'");

        var tensor = torch.empty(info.Shape, info.ScalarType, torch.CPU);
        try
        {
            // Straight from the file into tensor memory: no managed staging buffer.
            TensorMemory.ForEachChunk(tensor, maxChunkBytes,
                (chunk, offset) => ReadExactly(_handle, chunk, _dataStart + info.Begin + offset, Path));
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle.Dispose();

    /// <summary>Fills <paramref name="destination"/>; a short file is an error rather than a retry loop that never ends.</summary>
    private static void ReadExactly(SafeFileHandle handle, Span<byte> destination, long offset, string path)
    {
        while (!destination.IsEmpty)
        {
            int n = RandomAccess.Read(handle, destination, offset);
            if (n <= 0) throw SafeTensorsHeader.Bad(path, $"unexpected end of file at offset {offset}");
            destination = destination[n..];
            offset += n;
        }
    }
}
