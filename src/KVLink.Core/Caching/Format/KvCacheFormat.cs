using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using KVLink.Core.Model.SafeTensors;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace KVLink.Core.Caching;

/// <summary>
/// The one serialized form of a document cache, used by every store that keeps bytes: a safetensors file
/// (tensors <c>keys</c>, <c>values</c>, <c>token_ids</c>, and with int8 compression <c>key_scales</c> and
/// <c>value_scales</c>) whose <c>__metadata__</c> describes the entry, including an XxHash128 checksum over
/// the whole file (with the checksum digits themselves read as '0'). See docs/cache-format.md.
/// Reading treats the bytes as untrusted: every failure is a <see cref="KvCacheFormatException"/>, and no
/// input makes a read allocate more than a small multiple of its own length.
/// </summary>
internal static class KvCacheFormat
{
    /// <summary>Value of <c>kvlink.format</c>.</summary>
    public const string FormatName = "kvlink-document-cache";
    /// <summary>The format version written, and the only one read.</summary>
    public const int Version = 1;
    /// <summary>Largest JSON header accepted (the document text is in it).</summary>
    public const int MaxHeaderBytes = 64 << 20;

    internal const string KeyFormat = "kvlink.format", KeyVersion = "kvlink.format_version", KeyChecksum = "kvlink.checksum",
        KeyTenant = "kvlink.tenant", KeyModel = "kvlink.model_fingerprint", KeyPromptFormat = "kvlink.prompt_format",
        KeyDocument = "kvlink.document_id", KeySlot = "kvlink.slot", KeyTitle = "kvlink.title", KeyText = "kvlink.text",
        KeyRope = "kvlink.rope", KeyDType = "kvlink.dtype", KeyQuantization = "kvlink.quantization", KeyTokens = "kvlink.token_count",
        KeyKeepFraction = "kvlink.keep_fraction";

    private const string ChecksumPrefix = "xxh128:";
    private static readonly byte[] ChecksumPattern = Encoding.UTF8.GetBytes($"\"{KeyChecksum}\":\"{ChecksumPrefix}");
    private const int ChecksumDigits = 32;

    /// <summary>Serializes <paramref name="entry"/> (its tensors are not modified).</summary>
    /// <exception cref="ArgumentException">Compression requested for an entry without <see cref="DocumentKvCache.Rope"/>, or an unsupported dtype.</exception>
    public static byte[] Serialize(DocumentKvCache entry, KvCacheQuantization compression = KvCacheQuantization.None)
    {
        ArgumentNullException.ThrowIfNull(entry);
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["token_ids"] = tensor(entry.TokenIds.ToArray(), ScalarType.Int32),
        };
        if (compression == KvCacheQuantization.None)
        {
            tensors["keys"] = Dense(entry.Keys);
            tensors["values"] = Dense(entry.Values);
        }
        else
        {
            if (entry.Rope is null) throw new ArgumentException("Quantised storage needs the entry's RoPE settings (DocumentKvCache.Rope) to quantise keys before RoPE.", nameof(entry));
            var (k, ks, v, vs) = Int8Quantizer.Quantize(Dense(entry.Keys), Dense(entry.Values), entry.Rope.ToRotaryEmbedding(), compression == KvCacheQuantization.Int8PerChannel);
            (tensors["keys"], tensors["key_scales"], tensors["values"], tensors["value_scales"]) = (k, ks, v, vs);
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [KeyFormat] = FormatName,
            [KeyVersion] = Version.ToString(CultureInfo.InvariantCulture),
            [KeyChecksum] = ChecksumPrefix + new string('0', ChecksumDigits),
            [KeyTenant] = entry.Tenant,
            [KeyModel] = entry.ModelFingerprint,
            [KeyPromptFormat] = entry.PromptFormat,
            [KeyDocument] = entry.DocumentId,
            [KeySlot] = entry.Slot.ToString(CultureInfo.InvariantCulture),
            [KeyText] = entry.Text,
            [KeyDType] = SafeTensorDType.ToName(entry.Keys.dtype),
            [KeyQuantization] = QuantizationName(compression),
            [KeyTokens] = entry.Length.ToString(CultureInfo.InvariantCulture),
        };
        if (entry.Title is not null) metadata[KeyTitle] = entry.Title;
        if (entry.Rope is not null) metadata[KeyRope] = entry.Rope.ToString();
        if (entry.KeepFraction < 1) metadata[KeyKeepFraction] = entry.KeepFraction.ToString("R", CultureInfo.InvariantCulture);

        var ordered = SafeTensorsWriter.Validate(tensors);
        byte[] header = SafeTensorsWriter.BuildHeader(ordered, metadata);
        long total = 8 + header.Length + ordered.Sum(t => t.Value.numel() * t.Value.ElementSize);
        if (total > Array.MaxLength) throw new ArgumentException($"The entry serializes to {total} bytes, more than one buffer can hold.", nameof(entry));

        var buffer = new byte[total];
        BinaryPrimitives.WriteUInt64LittleEndian(buffer, (ulong)header.Length);
        header.CopyTo(buffer, 8);
        long at = 8 + header.Length;
        foreach (var (_, t) in ordered)
        {
            long start = at;
            TensorMemory.ForEachChunk(t, TensorMemory.DefaultChunkBytes, (chunk, offset) => chunk.CopyTo(buffer.AsSpan((int)(start + offset))));
            at += t.numel() * t.ElementSize;
        }

        int digits = 8 + ChecksumDigitsOffset(header, "serializer");
        var hash = XxHash128.Hash(buffer);
        Encoding.ASCII.GetBytes(Convert.ToHexStringLower(hash)).CopyTo(buffer, digits);
        return buffer;
    }

    /// <summary>Parses and verifies a serialized entry held in memory.</summary>
    /// <exception cref="KvCacheFormatException">The bytes are not a valid, intact entry of this format version.</exception>
    public static DocumentKvCache Deserialize(ReadOnlyMemory<byte> bytes) => Read(ByteSource.Of(bytes), "buffer");

    /// <summary>Parses and verifies a serialized entry in a file, reading tensor data straight into tensor memory.</summary>
    /// <exception cref="KvCacheFormatException">The file is not a valid, intact entry of this format version.</exception>
    public static DocumentKvCache Read(SafeFileHandle file, string name)
    {
        ArgumentNullException.ThrowIfNull(file);
        return Read(ByteSource.Of(file), name);
    }

    /// <summary>The metadata of a serialized entry without reading its tensors or verifying its checksum (for indexing and inspection).</summary>
    /// <exception cref="KvCacheFormatException">The header is malformed.</exception>
    public static IReadOnlyDictionary<string, string> ReadMetadata(ReadOnlyMemory<byte> bytes)
    {
        var source = ByteSource.Of(bytes);
        var (header, _) = ReadHeader(source, "buffer");
        return Parse(header, source.Length - 8 - header.Length, "buffer").Metadata;
    }

    internal static DocumentKvCache Read(ByteSource source, string name)
    {
        try
        {
            return ReadCore(source, name);
        }
        catch (KvCacheFormatException) { throw; }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or FormatException or OverflowException or IOException or KeyNotFoundException or InvalidOperationException)
        {
            throw new KvCacheFormatException($"{name}: {e.Message}", e);
        }
    }

    private static DocumentKvCache ReadCore(ByteSource source, string name)
    {
        var (header, prefix) = ReadHeader(source, name);
        long dataLength = source.Length - 8 - header.Length;
        var parsed = Parse(header, dataLength, name);
        var meta = parsed.Metadata;

        if (Get(meta, KeyFormat, name) != FormatName) throw Bad(name, "not a KVLink document cache");
        if (Get(meta, KeyVersion, name) != Version.ToString(CultureInfo.InvariantCulture))
            throw Bad(name, $"format version '{meta[KeyVersion]}' is not the supported version {Version}");

        int digits = ChecksumDigitsOffset(header, name);
        string expected = Encoding.ASCII.GetString(header, digits, ChecksumDigits);
        if (Get(meta, KeyChecksum, name) != ChecksumPrefix + expected) throw Bad(name, "checksum field is inconsistent");
        var zeroed = (byte[])header.Clone();
        zeroed.AsSpan(digits, ChecksumDigits).Fill((byte)'0');
        var hash = new XxHash128();
        hash.Append(prefix);
        hash.Append(zeroed);

        var compression = ParseQuantization(Get(meta, KeyQuantization, name), name);
        var dtypeName = Get(meta, KeyDType, name);
        if (!SafeTensorDType.TryParse(dtypeName, out var dtype, out _) || dtype is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
            throw Bad(name, $"dtype '{dtypeName}' is not a floating-point cache dtype");
        KvCacheRope? rope = null;
        if (meta.TryGetValue(KeyRope, out var ropeText) && !KvCacheRope.TryParse(ropeText, out rope)) throw Bad(name, "malformed RoPE settings");
        int slot = ParseCount(Get(meta, KeySlot, name), name, "slot");
        int tokenCount = ParseCount(Get(meta, KeyTokens, name), name, "token count");

        var infos = parsed.Tensors;
        string[] expectedNames = compression == KvCacheQuantization.None
            ? ["keys", "token_ids", "values"] : ["key_scales", "keys", "token_ids", "value_scales", "values"];
        if (!infos.Keys.Order(StringComparer.Ordinal).SequenceEqual(expectedNames)) throw Bad(name, $"tensors must be exactly {string.Join(", ", expectedNames)}");
        var keysInfo = infos["keys"];
        var shape = keysInfo.Shape;
        if (shape.Length != 4 || shape.Any(d => d == 0) || !infos["values"].Shape.SequenceEqual(shape)) throw Bad(name, "keys and values must share a non-empty [layers, kv_heads, tokens, head_dim] shape");
        if (shape[2] != tokenCount || infos["token_ids"].DType != "I32" || !infos["token_ids"].Shape.SequenceEqual([tokenCount])) throw Bad(name, "token ids do not match the tensors");
        string storedType = compression == KvCacheQuantization.None ? dtypeName : "I8";
        if (keysInfo.DType != storedType || infos["values"].DType != storedType) throw Bad(name, $"keys and values must be {storedType}");
        if (rope is not null && rope.HeadDim != shape[3]) throw Bad(name, "RoPE head width does not match the keys");
        if (compression != KvCacheQuantization.None)
        {
            if (rope is null) throw Bad(name, "quantised keys need RoPE settings");
            long[] scaleShape = compression == KvCacheQuantization.Int8PerChannel ? [shape[0], shape[1], 1, shape[3]] : [shape[0], shape[1], shape[2], 1];
            foreach (var s in new[] { "key_scales", "value_scales" })
                if (infos[s].DType != "F32" || !infos[s].Shape.SequenceEqual(scaleShape)) throw Bad(name, $"{s} must be F32 [{string.Join(", ", scaleShape)}]");
        }
        // The checksum covers the data section as one run, so the tensors must tile it exactly.
        var byOffset = infos.Values.OrderBy(t => t.Begin).ToList();
        long end = 0;
        foreach (var t in byOffset)
        {
            if (t.Begin != end) throw Bad(name, "tensor data does not tile the data section");
            end = t.End;
        }
        if (end != dataLength) throw Bad(name, "trailing bytes after the tensor data");

        var loaded = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            long dataStart = 8 + header.Length;
            foreach (var info in byOffset)
            {
                var t = empty(info.Shape, info.ScalarType, CPU);
                loaded[info.Name] = t;
                TensorMemory.ForEachChunk(t, TensorMemory.DefaultChunkBytes, (chunk, offset) =>
                {
                    source.Read(chunk, dataStart + info.Begin + offset);
                    hash.Append(chunk);
                });
            }
            if (Convert.ToHexStringLower(hash.GetCurrentHash()) != expected) throw Bad(name, "checksum mismatch");

            var ids = loaded["token_ids"].data<int>().ToArray();
            if (ids.Any(id => id < 0)) throw Bad(name, "negative token id");
            Tensor keys, values;
            if (compression == KvCacheQuantization.None)
            {
                (keys, values) = (loaded["keys"], loaded["values"]);
                loaded.Remove("keys");
                loaded.Remove("values");
            }
            else
            {
                (keys, values) = Int8Quantizer.Dequantize(loaded["keys"], loaded["key_scales"], loaded["values"], loaded["value_scales"], rope!.ToRotaryEmbedding(), dtype);
            }
            meta.TryGetValue(KeyTitle, out var title);
            double keep = 1;
            if (meta.TryGetValue(KeyKeepFraction, out var keepText)
                && !(double.TryParse(keepText, NumberStyles.Float, CultureInfo.InvariantCulture, out keep) && keep > 0 && keep <= 1))
                throw Bad(name, $"bad {KeyKeepFraction} '{keepText}'");
            return new DocumentKvCache(Get(meta, KeyDocument, name), slot, ids, keys, values, Get(meta, KeyModel, name), Get(meta, KeyPromptFormat, name),
                title, Get(meta, KeyText, name), Get(meta, KeyTenant, name), rope, keep);
        }
        finally
        {
            foreach (var t in loaded.Values) t.Dispose();
        }
    }

    private static (byte[] Header, byte[] Prefix) ReadHeader(ByteSource source, string name)
    {
        long length = source.Length;
        if (length < 8) throw Bad(name, $"{length} bytes is shorter than the 8-byte header length");
        var prefix = new byte[8];
        source.Read(prefix, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength == 0 || headerLength > MaxHeaderBytes || (long)headerLength > length - 8)
            throw Bad(name, $"header length {headerLength} is invalid for {length} bytes");
        var header = new byte[(int)headerLength];
        source.Read(header, 8);
        return (header, prefix);
    }

    private static (IReadOnlyDictionary<string, SafeTensorInfo> Tensors, IReadOnlyDictionary<string, string> Metadata) Parse(byte[] header, long dataLength, string name)
    {
        try
        {
            var parsed = SafeTensorsHeader.Parse(header, dataLength, name);
            return (parsed.Tensors, parsed.Metadata);
        }
        catch (InvalidDataException e) { throw new KvCacheFormatException(e.Message, e); }
    }

    private static int ChecksumDigitsOffset(byte[] header, string name)
    {
        int at = header.AsSpan().IndexOf(ChecksumPattern);
        if (at < 0 || header.AsSpan(at + 1).IndexOf(ChecksumPattern) >= 0) throw Bad(name, "there must be exactly one checksum field");
        int digits = at + ChecksumPattern.Length;
        if (digits + ChecksumDigits >= header.Length || header[digits + ChecksumDigits] != (byte)'"') throw Bad(name, "malformed checksum field");
        return digits;
    }

    private static string QuantizationName(KvCacheQuantization c) => c switch
    {
        KvCacheQuantization.None => "none",
        KvCacheQuantization.Int8PerChannel => "int8-per-channel",
        KvCacheQuantization.Int8PerToken => "int8-per-token",
        _ => throw new ArgumentOutOfRangeException(nameof(c), c, "Unknown compression."),
    };

    private static KvCacheQuantization ParseQuantization(string text, string name) => text switch
    {
        "none" => KvCacheQuantization.None,
        "int8-per-channel" => KvCacheQuantization.Int8PerChannel,
        "int8-per-token" => KvCacheQuantization.Int8PerToken,
        _ => throw Bad(name, $"unknown quantization '{text}'"),
    };

    private static int ParseCount(string text, string name, string what) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : throw Bad(name, $"malformed {what}");

    private static string Get(IReadOnlyDictionary<string, string> meta, string key, string name) =>
        meta.TryGetValue(key, out var v) ? v : throw Bad(name, $"metadata '{key}' is missing");

    private static Tensor Dense(Tensor t)
    {
        var cpu = t.device_type == TorchSharp.DeviceType.CPU ? t.alias() : t.cpu();
        return cpu.is_contiguous() ? cpu : cpu.contiguous();
    }

    private static KvCacheFormatException Bad(string name, string message) => new($"{name}: {message}");
}
