using System.Text;
using CsCheck;
using KVLink.Core.Caching;
using KVLink.Core.Model.SafeTensors;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Caching;

public sealed class KvCacheFormatTests
{
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Round_trip_is_bit_exact(ScalarType dtype)
    {
        using var entry = CacheTestData.Entry(CacheTestData.Key(), dtype: dtype);
        byte[] bytes = KvCacheFormat.Serialize(entry);
        using var back = KvCacheFormat.Deserialize(bytes);
        CacheTestData.AssertSame(entry, back);
    }

    [Fact]
    public void Output_is_a_plain_safetensors_file_with_self_describing_metadata()
    {
        using var entry = CacheTestData.Entry(CacheTestData.Key(), dtype: ScalarType.BFloat16);
        string path = Path.Combine(Path.GetTempPath(), $"kvlink-format-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, KvCacheFormat.Serialize(entry));
        try
        {
            using var file = SafeTensorsFile.Open(path);
            Assert.Equal(["keys", "token_ids", "values"], file.Tensors.Keys.Order(StringComparer.Ordinal));
            Assert.Equal("BF16", file.Tensors["keys"].DType);
            Assert.Equal("1", file.Metadata["kvlink.format_version"]);
            Assert.Equal("tenant-a", file.Metadata["kvlink.tenant"]);
            Assert.Equal(CacheTestData.Model, file.Metadata["kvlink.model_fingerprint"]);
            Assert.Equal("hf-rotate-half;head_dim=16;theta=10000", file.Metadata["kvlink.rope"]);
            Assert.Equal("none", file.Metadata["kvlink.quantization"]);
            Assert.StartsWith("xxh128:", file.Metadata["kvlink.checksum"]);
            using var keys = file.Read("keys");
            Assert.True(keys.equal(entry.Keys).all().item<bool>());
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public void Every_single_bit_flip_in_header_or_data_is_detected()
    {
        using var entry = CacheTestData.Entry(CacheTestData.Key(), tokens: 3);
        byte[] bytes = KvCacheFormat.Serialize(entry);
        // Every byte of a small entry, one bit each (the bit varies with position).
        for (int i = 0; i < bytes.Length; i++)
        {
            var copy = (byte[])bytes.Clone();
            copy[i] ^= (byte)(1 << (i % 8));
            Assert.Throws<KvCacheFormatException>(() => KvCacheFormat.Deserialize(copy).Dispose());
        }
    }

    [Fact]
    public void Every_truncation_is_detected()
    {
        using var entry = CacheTestData.Entry(CacheTestData.Key(), tokens: 3);
        byte[] bytes = KvCacheFormat.Serialize(entry);
        for (int n = 0; n < bytes.Length; n++)
            Assert.Throws<KvCacheFormatException>(() => KvCacheFormat.Deserialize(bytes.AsMemory(0, n)).Dispose());
    }

    [Fact]
    public void Another_format_version_is_refused_even_with_a_valid_checksum()
    {
        using var entry = CacheTestData.Entry(CacheTestData.Key());
        byte[] bytes = KvCacheFormat.Serialize(entry);
        byte[] rewritten = Resign(Replace(bytes, "\"kvlink.format_version\":\"1\"", "\"kvlink.format_version\":\"2\""));
        var e = Assert.Throws<KvCacheFormatException>(() => KvCacheFormat.Deserialize(rewritten));
        Assert.Contains("version", e.Message);
    }

    [Theory]
    [InlineData(KvCacheQuantization.Int8PerChannel)]
    [InlineData(KvCacheQuantization.Int8PerToken)]
    public void Int8_round_trip_is_close_and_keys_are_quantised_before_rope(KvCacheQuantization compression)
    {
        using var scope = NewDisposeScope();
        var key = CacheTestData.Key();
        using var entry = CacheTestData.Entry(key, tokens: 64);
        byte[] bytes = KvCacheFormat.Serialize(entry, compression);
        Assert.True(bytes.Length < KvCacheFormat.Serialize(entry).Length * 0.35, "int8 should be about a quarter of fp32");
        using var back = KvCacheFormat.Deserialize(bytes);
        Assert.Equal(ScalarType.Float32, back.Keys.dtype);
        // Symmetric int8 error is at most half a step: amax/254 per channel or token.
        double kErr = (back.Keys - entry.Keys).abs().max().item<float>(), kMax = entry.Keys.abs().max().item<float>();
        double vErr = (back.Values - entry.Values).abs().max().item<float>(), vMax = entry.Values.abs().max().item<float>();
        Assert.True(kErr <= kMax / 254 * 1.5 + 1e-5, $"key error {kErr}");
        Assert.True(vErr <= vMax / 254 * 1.01 + 1e-6, $"value error {vErr}");

        // Pre-RoPE quantisation: keys with the same pre-RoPE content at every position dequantise to the same pre-RoPE key.
        var rope = CacheTestData.Rope.ToRotaryEmbedding();
        var raw = randn([1, 1, 1, 16]).expand(1, 1, 32, 16).contiguous();
        var (cos, sin) = rope.Angles(arange(32, ScalarType.Int64));
        var rotated = KVLink.Core.Model.RotaryEmbedding.Apply(raw, cos, sin);
        var ids = Enumerable.Range(0, 32).ToArray();
        using var same = new DocumentKvCache("d", 0, ids, rotated, rotated.clone(), "m", "f", null, "t", "x", CacheTestData.Rope);
        using var sameBack = KvCacheFormat.Deserialize(KvCacheFormat.Serialize(same, compression));
        var (cosBack, sinBack) = rope.Angles(-arange(32, ScalarType.Int64));
        var unrotated = KVLink.Core.Model.RotaryEmbedding.Apply(sameBack.Keys, cosBack, sinBack);
        Assert.True((unrotated - unrotated[.., .., ..1, ..]).abs().max().item<float>() < 1e-5, "every position should hold the same pre-RoPE key");
    }

    [Fact]
    public void Random_mutations_never_crash_the_reader_nor_allocate_unboundedly()
    {
        using var entry = CacheTestData.Entry(CacheTestData.Key(), tokens: 5);
        byte[] bytes = KvCacheFormat.Serialize(entry);
        var mutation = Gen.Select(Gen.Int[0, bytes.Length - 1], Gen.Byte, Gen.Int[0, 3], Gen.Int[0, bytes.Length]);
        mutation.Sample((at, value, kind, cut) =>
        {
            byte[] m = kind switch
            {
                0 => Set(bytes, at, value),
                1 => bytes[..cut],
                2 => [.. bytes[..at], value, .. bytes[at..]],
                _ => Set(Set(bytes, at, value), (at * 7) % bytes.Length, (byte)(value ^ 0x5a)),
            };
            long before = GC.GetAllocatedBytesForCurrentThread();
            try { KvCacheFormat.Deserialize(m).Dispose(); }
            catch (KvCacheFormatException) { }
            long managed = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(managed < 64 * m.Length + (1 << 20), $"reading {m.Length} bytes allocated {managed} managed bytes");
        }, iter: 1500, threads: 1);
    }

    [Fact]
    public void Lying_headers_that_claim_huge_tensors_are_refused_before_allocating()
    {
        using var entry = CacheTestData.Entry(CacheTestData.Key(), tokens: 5);
        byte[] bytes = KvCacheFormat.Serialize(entry);
        byte[] huge = Resign(Replace(bytes, "\"shape\":[2,2,5,16]", "\"shape\":[2,2,5000000,16]"));
        Assert.Throws<KvCacheFormatException>(() => KvCacheFormat.Deserialize(huge));
    }

    private static byte[] Set(byte[] b, int at, byte v) { var c = (byte[])b.Clone(); c[at] = v; return c; }

    /// <summary>Replaces text inside the header (keeping its padded length), so tests can forge well-formed entries.</summary>
    internal static byte[] Replace(byte[] bytes, string from, string to)
    {
        int headerLength = (int)BitConverter.ToUInt64(bytes, 0);
        string header = Encoding.UTF8.GetString(bytes, 8, headerLength);
        Assert.Contains(from, header);
        string changed = header.Replace(from, to).TrimEnd();
        int padded = (Encoding.UTF8.GetByteCount(changed) + 7) / 8 * 8;
        byte[] newHeader = Encoding.UTF8.GetBytes(changed.PadRight(padded));
        var result = new byte[8 + newHeader.Length + bytes.Length - 8 - headerLength];
        BitConverter.GetBytes((ulong)newHeader.Length).CopyTo(result, 0);
        newHeader.CopyTo(result, 8);
        bytes.AsSpan(8 + headerLength).CopyTo(result.AsSpan(8 + newHeader.Length));
        return result;
    }

    /// <summary>Recomputes the checksum of a forged entry (what an attacker or a buggy writer could do).</summary>
    internal static byte[] Resign(byte[] bytes)
    {
        var c = (byte[])bytes.Clone();
        byte[] pattern = Encoding.UTF8.GetBytes("\"kvlink.checksum\":\"xxh128:");
        int at = c.AsSpan().IndexOf(pattern) + pattern.Length;
        c.AsSpan(at, 32).Fill((byte)'0');
        Encoding.ASCII.GetBytes(Convert.ToHexStringLower(System.IO.Hashing.XxHash128.Hash(c))).CopyTo(c, at);
        return c;
    }
}
