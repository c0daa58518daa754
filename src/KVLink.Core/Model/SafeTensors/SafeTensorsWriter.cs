using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;
using KVLink.Core.IO;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>Writes tensors in the safetensors format.</summary>
internal static class SafeTensorsWriter
{
    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> in ordinal name order, with the header
    /// padded by spaces to a multiple of 8 bytes so the data section is 8-byte aligned. The file is
    /// replaced atomically: no reader ever sees a half-written file.
    /// </summary>
    /// <param name="path">Target file; overwritten if it exists.</param>
    /// <param name="tensors">Named tensors, on any device and of any layout; they are not modified.</param>
    /// <param name="metadata">Optional <c>__metadata__</c> string map.</param>
    /// <exception cref="ArgumentException">A name is repeated or reserved, or a dtype is not supported.</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        var ordered = Validate(tensors);
        byte[] header = BuildHeader(ordered, metadata);

        AtomicFile.Write(path, stream =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            foreach (var (_, tensor) in ordered) WriteData(stream, tensor);
        });
    }

    internal static List<KeyValuePair<string, torch.Tensor>> Validate(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
    {
        var list = tensors.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in list)
        {
            ArgumentNullException.ThrowIfNull(name, nameof(tensors));
            ArgumentNullException.ThrowIfNull(tensor, nameof(tensors));
            if (name == SafeTensorsHeader.MetadataKey) throw new ArgumentException($"'{name}' is reserved for metadata.", nameof(tensors));
            if (!seen.Add(name)) throw new ArgumentException($"Tensor name '{name}' appears twice.", nameof(tensors));
            SafeTensorDType.ToName(tensor.dtype); // Fail before any file is created.
        }
        list.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return list;
    }

    internal static byte[] BuildHeader(List<KeyValuePair<string, torch.Tensor>> ordered, IReadOnlyDictionary<string, string>? metadata)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject(SafeTensorsHeader.MetadataKey);
                foreach (var (key, value) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal)) json.WriteString(key, value);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, tensor) in ordered)
            {
                long length = tensor.numel() * tensor.ElementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", SafeTensorDType.ToName(tensor.dtype));
                json.WriteStartArray("shape");
                foreach (long d in tensor.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += length;
            }
            json.WriteEndObject();
        }
        // Space padding keeps the JSON valid and aligns the data section for readers that map it.
        int padded = (buffer.WrittenCount + 7) / 8 * 8;
        var header = new byte[padded];
        buffer.WrittenSpan.CopyTo(header);
        header.AsSpan(buffer.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static void WriteData(FileStream stream, torch.Tensor tensor)
    {
        // Bring the data to contiguous CPU memory, disposing only the copies made here, never the caller's tensor.
        var cpu = tensor.device_type == DeviceType.CPU ? tensor : tensor.cpu();
        var dense = cpu.is_contiguous() ? cpu : cpu.contiguous();
        try
        {
            TensorMemory.ForEachChunk(dense, TensorMemory.DefaultChunkBytes, (chunk, _) => stream.Write(chunk));
        }
        finally
        {
            if (!ReferenceEquals(dense, cpu)) dense.Dispose();
            if (!ReferenceEquals(cpu, tensor)) cpu.Dispose();
        }
    }
}
