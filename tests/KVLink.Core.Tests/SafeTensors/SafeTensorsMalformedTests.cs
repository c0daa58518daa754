using System.Text;
using KVLink.Core.Model.SafeTensors;
using Xunit;

namespace KVLink.Core.Tests.SafeTensors;

public sealed class SafeTensorsMalformedTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly byte[] EightBytes = new byte[8];

    private static string Entry(string name, string dtype = "\"F32\"", string shape = "[2]", string offsets = "[0,8]") =>
        $"\"{name}\":{{\"dtype\":{dtype},\"shape\":{shape},\"data_offsets\":{offsets}}}";

    [Fact]
    public void HandWrittenMinimalFileReadsTheRightValues()
    {
        // Built without our writer: header length 0x36, the JSON, then two little-endian floats.
        string json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        Assert.Equal(54, json.Length);
        byte[] data = [0x00, 0x00, 0xC0, 0x3F, 0x00, 0x00, 0x20, 0xC1]; // 1.5f, -10f
        string path = RawFile.Write(_dir, "minimal.safetensors", RawFile.Build(json, data));

        using var file = SafeTensorsFile.Open(path);
        var info = file.Tensors["a"];
        Assert.Equal(("F32", 0L, 8L), (info.DType, info.Begin, info.End));
        Assert.Equal(new long[] { 2 }, info.Shape);
        using var t = file.Read("a");
        Assert.Equal(new float[] { 1.5f, -10f }, t.data<float>().ToArray());
    }

    [Fact]
    public void HandWrittenFileWithPaddingMetadataAndHolesReads()
    {
        // Space padding, metadata first, a 4-byte hole before "b", and an I16 and a BF16 value.
        string json = "{\"__metadata__\":{\"format\":\"pt\"}," + Entry("b", "\"BF16\"", "[1]", "[4,6]") + "," + Entry("a", "\"I16\"", "[2]", "[0,4]") + "}   ";
        byte[] data = [0xFE, 0xFF, 0x02, 0x00, 0xC0, 0x3F]; // -2, 2 | bf16 1.5
        string path = RawFile.Write(_dir, "holes.safetensors", RawFile.Build(json, data));

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal("pt", file.Metadata["format"]);
        using var a = file.Read("a");
        using var b = file.Read("b");
        Assert.Equal(new short[] { -2, 2 }, a.data<short>().ToArray());
        Assert.Equal(1.5f, b.to(TorchSharp.torch.ScalarType.Float32).item<float>());
    }

    /// <summary>Case id, header JSON (or null for a raw-bytes case), expected message fragment, tensor named in the message.</summary>
    public static TheoryData<string, string, string, string?> BadHeaders => new()
    {
        { "bad-json", "{\"a\":", "header: invalid JSON", null },
        { "trailing-garbage", "{} x", "header: invalid JSON", null },
        { "root-array", "[]", "root is not a JSON object", null },
        { "root-string", "\"x\"", "root is not a JSON object", null },
        { "entry-number", "{\"w.entry\":5}", "entry is not a JSON object", "w.entry" },
        { "dtype-missing", "{\"w.dt\":{\"shape\":[2],\"data_offsets\":[0,8]}}", "dtype is missing", "w.dt" },
        { "dtype-unknown", "{" + Entry("w.f8", "\"F8_E4M3\"") + "}", "unknown dtype 'F8_E4M3'", "w.f8" },
        { "dtype-lowercase", "{" + Entry("w.lc", "\"f32\"") + "}", "unknown dtype", "w.lc" },
        { "shape-number", "{" + Entry("w.s1", shape: "2") + "}", "shape is missing or not an array", "w.s1" },
        { "shape-negative", "{" + Entry("w.s2", shape: "[-2]") + "}", "non-negative integers", "w.s2" },
        { "shape-fraction", "{" + Entry("w.s3", shape: "[2.5]") + "}", "non-negative integers", "w.s3" },
        { "shape-string", "{" + Entry("w.s4", shape: "[\"2\"]") + "}", "non-negative integers", "w.s4" },
        { "shape-huge-int", "{" + Entry("w.s5", shape: "[18446744073709551615]") + "}", "non-negative integers", "w.s5" },
        { "shape-rank-65", "{" + Entry("w.s6", shape: "[" + string.Join(",", Enumerable.Repeat("1", 65)) + "]") + "}", "more than 64", "w.s6" },
        { "numel-overflow", "{" + Entry("w.big", shape: "[4294967296,4294967296]") + "}", "overflow", "w.big" },
        { "numel-overflow-with-zero", "{" + Entry("w.big0", shape: "[0,4294967296,4294967296]", offsets: "[0,0]") + "}", "overflow", "w.big0" },
        { "offsets-missing", "{\"w.o0\":{\"dtype\":\"F32\",\"shape\":[2]}}", "data_offsets is missing", "w.o0" },
        { "offsets-one", "{" + Entry("w.o1", offsets: "[0]") + "}", "data_offsets is missing or not an array of two", "w.o1" },
        { "offsets-three", "{" + Entry("w.o3", offsets: "[0,8,8]") + "}", "data_offsets is missing or not an array of two", "w.o3" },
        { "offsets-string", "{" + Entry("w.o4", offsets: "[0,\"8\"]") + "}", "two non-negative integers", "w.o4" },
        { "offsets-negative", "{" + Entry("w.o5", offsets: "[-8,0]") + "}", "two non-negative integers", "w.o5" },
        { "offsets-reversed", "{" + Entry("w.o6", shape: "[0]", offsets: "[8,0]") + "}", "is after end", "w.o6" },
        { "end-beyond-data", "{" + Entry("w.end", shape: "[4]", offsets: "[0,16]") + "}", "beyond the data section (8 bytes)", "w.end" },
        { "size-mismatch", "{" + Entry("w.size", shape: "[3]", offsets: "[0,8]") + "}", "need 12", "w.size" },
        { "overlap", "{" + Entry("w.one", shape: "[1]", offsets: "[0,4]") + "," + Entry("w.two", shape: "[1]", offsets: "[2,6]") + "}", "overlaps tensor 'w.one'", "w.two" },
        { "same-range", "{" + Entry("w.p", shape: "[1]", offsets: "[0,4]") + "," + Entry("w.q", shape: "[1]", offsets: "[0,4]") + "}", "overlaps", "w.q" },
        { "duplicate-name", "{" + Entry("w.dup") + "," + Entry("w.dup") + "}", "appears twice", "w.dup" },
        { "metadata-number", "{\"__metadata__\":5}", "'__metadata__' is not a JSON object", null },
        { "metadata-non-string", "{\"__metadata__\":{\"k\":1}}", "value of 'k' is not a string", null },
        { "metadata-null-value", "{\"__metadata__\":{\"k\":null}}", "value of 'k' is not a string", null },
        { "metadata-twice", "{\"__metadata__\":{},\"__metadata__\":{}}", "appears twice", null },
    };

    [Theory]
    [MemberData(nameof(BadHeaders))]
    public void MalformedHeaderIsInvalidDataNamingFileAndTensor(string id, string json, string fragment, string? tensor)
    {
        string path = RawFile.Write(_dir, $"case-{id}.safetensors", RawFile.Build(json, EightBytes));
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains($"case-{id}.safetensors", e.Message);
        Assert.Contains(fragment, e.Message);
        if (tensor is not null) Assert.Contains($"'{tensor}'", e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void FileShorterThanEightBytes(int length)
    {
        string path = RawFile.Write(_dir, $"short{length}.safetensors", new byte[length]);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains($"short{length}.safetensors", e.Message);
        Assert.Contains("shorter than", e.Message);
    }

    [Fact]
    public void HeaderLengthZero()
    {
        string path = RawFile.Write(_dir, "zero.safetensors", RawFile.Build(0, [], Encoding.UTF8.GetBytes("{}      ")));
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("zero.safetensors", e.Message);
        Assert.Contains("header length is 0", e.Message);
    }

    [Theory]
    [InlineData(1000UL)]
    [InlineData(3UL)]               // one past what the file holds
    [InlineData(ulong.MaxValue)]     // would be negative as a long
    public void HeaderLengthLargerThanTheFile(ulong declared)
    {
        byte[] header = Encoding.UTF8.GetBytes("{}");
        string path = RawFile.Write(_dir, "long.safetensors", RawFile.Build(declared, header, []));
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("long.safetensors", e.Message);
        Assert.Matches("larger than the file|100 MiB", e.Message);
    }

    [Fact]
    public void HeaderOver100MiBIsRefusedEvenWhenTheFileIsThatLarge()
    {
        string path = _dir.File("huge.safetensors");
        using (var fs = new FileStream(path, FileMode.CreateNew))
        {
            fs.Write(BitConverter.GetBytes(100UL * 1024 * 1024 + 1));
            fs.SetLength(120L * 1024 * 1024); // sparse: costs no disk
        }
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("huge.safetensors", e.Message);
        Assert.Contains("100 MiB", e.Message);
    }

    [Fact]
    public void InvalidUtf8()
    {
        byte[] header = [(byte)'{', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)':', (byte)'1', (byte)'}'];
        string path = RawFile.Write(_dir, "utf8.safetensors", RawFile.Build((ulong)header.Length, header, []));
        var e = Assert.Throws<InvalidDataException>(() => SafeTensorsFile.Open(path));
        Assert.Contains("utf8.safetensors", e.Message);
        Assert.Contains("UTF-8", e.Message);
    }

    [Fact]
    public void EmptyTensorsMayShareAnOffsetWithoutOverlapping()
    {
        string json = "{" + Entry("full", shape: "[2]", offsets: "[0,8]") + "," + Entry("none", shape: "[0]", offsets: "[4,4]") + "}";
        string path = RawFile.Write(_dir, "empty-ok.safetensors", RawFile.Build(json, EightBytes));
        using var file = SafeTensorsFile.Open(path);
        using var none = file.Read("none");
        Assert.Equal(0, none.numel());
    }

    [Fact]
    public void FileTruncatedAfterOpenIsInvalidDataOnRead()
    {
        string json = "{" + Entry("a", shape: "[2]", offsets: "[0,8]") + "}";
        string path = RawFile.Write(_dir, "shrinks.safetensors", RawFile.Build(json, EightBytes));
        using var file = SafeTensorsFile.Open(path);
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete)) fs.SetLength(20);
        var e = Assert.Throws<InvalidDataException>(() => file.Read("a"));
        Assert.Contains("shrinks.safetensors", e.Message);
        Assert.Contains("unexpected end of file", e.Message);
    }
}
