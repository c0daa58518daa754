using Xunit;
using KVLink.Core.Model.SafeTensors;
using TorchSharp;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.SafeTensors;

public sealed class SafeTensorsRoundTripTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Values chosen to be exact in every float type they are stored in.</summary>
    private static Tensor Make(string dtype, long[] shape)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        double[] pattern = [1.5, -2, 0.25, 256, -0.125, 3, 0, 7];
        var values = Enumerable.Range(0, (int)n).Select(i => pattern[i % pattern.Length] + (dtype is "F32" or "F64" ? i : 0)).ToArray();
        return dtype switch
        {
            "I64" => tensor(Enumerable.Range(0, (int)n).Select(i => i % 2 == 0 ? long.MinValue + i : long.MaxValue - i).ToArray()).reshape(shape),
            "U8" => tensor(Enumerable.Range(0, (int)n).Select(i => (byte)(255 - i)).ToArray()).reshape(shape),
            "BOOL" => tensor(Enumerable.Range(0, (int)n).Select(i => i % 3 == 0).ToArray()).reshape(shape),
            "I32" or "I16" or "I8" => tensor(Enumerable.Range(0, (int)n).Select(i => (i % 2 == 0 ? -1 : 1) * (i + 100)).ToArray())
                .to(SafeTensorDType.ToScalarType(dtype)).reshape(shape),
            _ => tensor(values).to(SafeTensorDType.ToScalarType(dtype)).reshape(shape),
        };
    }

    private static void AssertSame(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(DeviceType.CPU, actual.device_type);
        if (expected.numel() == 0) return; // TorchSharp's accessors refuse empty tensors; dtype and shape are all there is.
        Assert.Equal(expected.contiguous().bytes.ToArray(), actual.bytes.ToArray());
        if (expected.dtype == ScalarType.Int64)
            Assert.Equal(expected.data<long>().ToArray(), actual.data<long>().ToArray());
        else
            Assert.Equal(expected.to(ScalarType.Float64).data<double>().ToArray(), actual.to(ScalarType.Float64).data<double>().ToArray());
    }

    public static TheoryData<string> DTypes => new() { "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL" };

    [Theory]
    [MemberData(nameof(DTypes))]
    public void EveryDTypeRoundTripsExactly_IncludingScalarAndEmpty(string dtype)
    {
        using var matrix = Make(dtype, [3, 5]);
        using var scalar = Make(dtype, []);
        using var empty = Make(dtype, [0, 4]);
        string path = _dir.File($"{dtype}.safetensors");
        SafeTensorsWriter.Write(path, [new("matrix", matrix), new("scalar", scalar), new("empty", empty)]);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(["empty", "matrix", "scalar"], file.Tensors.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(dtype, file.Tensors["matrix"].DType);
        Assert.Empty(file.Tensors["scalar"].Shape);
        Assert.Equal(0, file.Tensors["empty"].ByteLength);
        foreach (var (name, expected) in new[] { ("matrix", matrix), ("scalar", scalar), ("empty", empty) })
        {
            using var read = file.Read(name);
            AssertSame(expected, read);
        }
    }

    [Fact]
    public void WriterLaysOutNameOrderedDataAfterA8BytePaddedHeader()
    {
        using var b = tensor(new float[] { 1, 2 });
        using var a = tensor(new float[] { 3 });
        string path = _dir.File("layout.safetensors");
        SafeTensorsWriter.Write(path, [new("b", b), new("a", a)]);

        byte[] bytes = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(bytes, 0);
        Assert.Equal(0, n % 8);
        Assert.Equal(8 + n + 12, bytes.Length);
        Assert.Equal(3f, BitConverter.ToSingle(bytes, (int)(8 + n)));      // "a" first
        Assert.Equal(2f, BitConverter.ToSingle(bytes, (int)(8 + n + 8)));  // then "b"
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal((0L, 4L), (file.Tensors["a"].Begin, file.Tensors["a"].End));
        Assert.Equal((4L, 12L), (file.Tensors["b"].Begin, file.Tensors["b"].End));
    }

    [Fact]
    public void MetadataRoundTrips()
    {
        using var t = tensor(new int[] { 1 });
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode \"quoted\" \n", ["empty"] = "" };
        string path = _dir.File("meta.safetensors");
        SafeTensorsWriter.Write(path, [new("t", t)], metadata);

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(metadata.OrderBy(p => p.Key), file.Metadata.OrderBy(p => p.Key));
    }

    [Fact]
    public void FileWithoutMetadataHasEmptyMetadata()
    {
        using var t = tensor(new int[] { 1 });
        string path = _dir.File("nometa.safetensors");
        SafeTensorsWriter.Write(path, [new("t", t)]);
        using var file = SafeTensorsFile.Open(path);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void NonContiguousAndOffsetViewsAreWrittenByValue()
    {
        using var source = arange(12, ScalarType.Float32).reshape(3, 4);
        using var transposed = source.t();
        using var slice = source.narrow(0, 1, 2); // contiguous, but starts 4 elements into the storage
        Assert.False(transposed.is_contiguous());
        string path = _dir.File("views.safetensors");
        SafeTensorsWriter.Write(path, [new("t", transposed), new("s", slice)]);

        using var file = SafeTensorsFile.Open(path);
        using var t = file.Read("t");
        using var s = file.Read("s");
        Assert.Equal(transposed.contiguous().data<float>().ToArray(), t.data<float>().ToArray());
        Assert.Equal(new float[] { 4, 5, 6, 7, 8, 9, 10, 11 }, s.data<float>().ToArray());
        Assert.Equal(12, source.numel()); // the caller's tensors are untouched
        Assert.Equal(0f, transposed[0, 0].item<float>());
    }

    [Theory]
    [InlineData(1)]   // smaller than one element: one element per chunk
    [InlineData(12)]  // three elements per chunk, last chunk partial
    [InlineData(40)]  // exactly the whole tensor
    public void ChunkedReadsFillTheSameBytes(long chunkBytes)
    {
        using var t = arange(10, ScalarType.Float32).mul(1.5);
        string path = _dir.File("chunks.safetensors");
        SafeTensorsWriter.Write(path, [new("pad", tensor(new byte[] { 9, 9, 9 })), new("t", t)]);

        using var file = SafeTensorsFile.Open(path);
        using var read = file.Read("t", chunkBytes);
        Assert.Equal(t.data<float>().ToArray(), read.data<float>().ToArray());
    }

    [Fact]
    public void OverwriteIsAtomicAndLeavesNoTempFiles()
    {
        string path = _dir.File("atomic.safetensors");
        using var v1 = tensor(new float[] { 1, 2 });
        SafeTensorsWriter.Write(path, [new("x", v1)]);
        using var reader = SafeTensorsFile.Open(path);

        using var v2 = tensor(new float[] { 3, 4, 5 });
        SafeTensorsWriter.Write(path, [new("x", v2)]);

        // The open reader keeps the old, complete file; a new open sees the new one.
        using (var old = reader.Read("x")) Assert.Equal(new float[] { 1, 2 }, old.data<float>().ToArray());
        using (var reopened = SafeTensorsFile.Open(path))
        using (var fresh = reopened.Read("x"))
            Assert.Equal(new float[] { 3, 4, 5 }, fresh.data<float>().ToArray());
        Assert.Equal(["atomic.safetensors"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void FailedWriteLeavesTheExistingFileAndNoTempFiles()
    {
        string path = _dir.File("keep.safetensors");
        using var good = tensor(new float[] { 1 });
        SafeTensorsWriter.Write(path, [new("x", good)]);
        byte[] before = File.ReadAllBytes(path);

        using var complex = zeros(2, ScalarType.ComplexFloat32);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("x", good), new("c", complex)]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("x", good), new("x", good)]));
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("__metadata__", good)]));

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public void ReadingAnUnknownTensorNamesItAndTheFile()
    {
        using var t = tensor(new float[] { 1 });
        string path = _dir.File("known.safetensors");
        SafeTensorsWriter.Write(path, [new("x", t)]);
        using var file = SafeTensorsFile.Open(path);
        var e = Assert.Throws<KeyNotFoundException>(() => file.Read("missing.weight"));
        Assert.Contains("missing.weight", e.Message);
        Assert.Contains("known.safetensors", e.Message);
    }

    [Fact]
    public void DTypeHelperMapsBothWays()
    {
        foreach (string name in SafeTensorDType.Names)
            Assert.Equal(name, SafeTensorDType.ToName(SafeTensorDType.ToScalarType(name)));
        Assert.Equal(2, SafeTensorDType.ElementSize("BF16"));
        Assert.Equal(1, SafeTensorDType.ElementSize("BOOL"));
        Assert.Equal(8, SafeTensorDType.ElementSize("I64"));
        Assert.False(SafeTensorDType.TryParse("f32", out _, out _));
        Assert.Throws<ArgumentException>(() => SafeTensorDType.ToName(ScalarType.ComplexFloat64));
    }
}
