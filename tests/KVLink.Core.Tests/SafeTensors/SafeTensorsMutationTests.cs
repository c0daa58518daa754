using KVLink.Core.Model.SafeTensors;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.SafeTensors;

/// <summary>Random corruption of a valid file: every outcome is a clean read or InvalidDataException, nothing else.</summary>
public sealed class SafeTensorsMutationTests(ITestOutputHelper output) : IDisposable
{
    /// <summary>2,000 in the regular run; the long run sets KVLINK_FUZZ_ITERATIONS (docs/reliability.md).</summary>
    private static int Iterations => int.TryParse(Environment.GetEnvironmentVariable("KVLINK_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : 2000;

    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private const string JsonChars = "0123456789[]{}\",:-. eE";

    [Fact]
    public void TwoThousandMutationsEitherReadOrFailAsInvalidData()
    {
        string validPath = _dir.File("valid.safetensors");
        using (var a = arange(12, ScalarType.Float32).reshape(3, 4))
        using (var b = tensor(new float[] { 1, 2, 3, 4, 5 }).to(ScalarType.BFloat16))
        using (var c = tensor(new long[] { -1, 7 }))
        using (var d = tensor(new[] { true, false, true }))
        using (var s = tensor(2.5))
        using (var e = zeros(0, ScalarType.Byte))
            SafeTensorsWriter.Write(validPath, [new("a", a), new("b", b), new("c", c), new("d", d), new("s", s), new("e", e)],
                new Dictionary<string, string> { ["format"] = "pt" });
        byte[] valid = File.ReadAllBytes(validPath);
        int headerEnd = 8 + (int)BitConverter.ToInt64(valid, 0);

        var random = new Random(20240611);
        string path = _dir.File("mutant.safetensors");
        int opened = 0, rejected = 0;
        for (int i = 0; i < Iterations; i++)
        {
            byte[] mutant = Mutate(valid, headerEnd, random, out string how);
            File.WriteAllBytes(path, mutant);
            try
            {
                using var file = SafeTensorsFile.Open(path);
                foreach (string name in file.Tensors.Keys)
                {
                    using var t = file.Read(name);
                    Assert.Equal(file.Tensors[name].ByteLength, t.numel() * t.ElementSize);
                }
                opened++;
            }
            catch (InvalidDataException)
            {
                rejected++;
            }
            catch (Exception ex)
            {
                Assert.Fail($"Mutation {i} ({how}) threw {ex.GetType().Name}: {ex.Message}");
            }
        }
        // Both outcomes must occur, or the run proved nothing about one of them.
        output.WriteLine($"safetensors mutations: {Iterations} inputs, {opened} read cleanly, {rejected} rejected as InvalidDataException, 0 other outcomes");
        Assert.InRange(opened, Iterations / 40, Iterations - Iterations / 40);
        Assert.InRange(rejected, Iterations / 40, Iterations - Iterations / 40);
    }

    private static byte[] Mutate(byte[] valid, int headerEnd, Random random, out string how)
    {
        byte[] m = (byte[])valid.Clone();
        int kind = random.Next(6);
        switch (kind)
        {
            case 0: // any byte, anywhere
            {
                int at = random.Next(m.Length);
                m[at] = (byte)random.Next(256);
                how = $"byte {at}";
                return m;
            }
            case 1: // a header byte becomes a JSON-significant character: keeps more mutants parseable
            {
                int at = 8 + random.Next(headerEnd - 8);
                m[at] = (byte)JsonChars[random.Next(JsonChars.Length)];
                how = $"json char at {at}";
                return m;
            }
            case 2: // one digit of a shape or offset changes: the JSON stays valid, the numbers do not
            {
                var digits = Enumerable.Range(8, headerEnd - 8).Where(j => char.IsAsciiDigit((char)m[j])).ToArray();
                int at = digits[random.Next(digits.Length)];
                m[at] = (byte)('0' + random.Next(10));
                how = $"digit at {at}";
                return m;
            }
            case 3: // truncation
            {
                int length = random.Next(m.Length);
                how = $"truncate to {length}";
                return m[..length];
            }
            case 4: // header length field off by a little, or random
            {
                long declared = random.Next(2) == 0 ? headerEnd - 8 + random.Next(-16, 17) : random.NextInt64();
                BitConverter.GetBytes(declared).CopyTo(m, 0);
                how = $"header length {declared}";
                return m;
            }
            default: // several random header bytes
            {
                how = "burst";
                for (int k = 0; k < 4; k++) m[8 + random.Next(headerEnd - 8)] = (byte)random.Next(256);
                return m;
            }
        }
    }
}
