using KVLink.TestSupport;
using System.IO.Hashing;
using System.Text;
using System.Text.RegularExpressions;
using KVLink.Core.Caching;
using KVLink.Core.Model;
using KVLink.Core.Tests.Caching;
using KVLink.Core.Tests.Tokenization;
using KVLink.Core.Tokenization;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// Seeded random corruption of the untrusted files other than safetensors checkpoints: cache entries
/// (<see cref="KvCacheFormat"/>), tokenizer.json and config.json. Every outcome must be a clean read or the
/// documented exception (<see cref="KvCacheFormatException"/> for cache entries, <see cref="InvalidDataException"/>
/// for the others), never anything else, never a hang (each run is bounded), and never an allocation out of
/// proportion to the input. The count comes from KVLINK_FUZZ_ITERATIONS for the long run (docs/reliability.md).
/// </summary>
[Collection(SerialCollection.Name)] // measures allocation per parse
public sealed class ParserMutationTests(ITestOutputHelper output) : IDisposable
{
    private static int Iterations(int regular) =>
        int.TryParse(Environment.GetEnvironmentVariable("KVLINK_FUZZ_ITERATIONS"), out int n) && n > 0 ? n : regular;

    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(30);
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private const string JsonChars = "0123456789[]{}\",:-. eEtrufalsn\\";

    [Fact]
    public async Task Cache_entries_mutated_read_cleanly_or_fail_as_KvCacheFormatException()
    {
        // Three shapes of entry: fp32, bf16, and int8 per-channel (extra scale tensors, pre-RoPE keys).
        var valid = new List<byte[]>();
        using (var a = CacheTestData.Entry(CacheTestData.Key("fuzz-a"), tokens: 5, seed: 3))
        using (var b = CacheTestData.Entry(CacheTestData.Key("fuzz-b"), tokens: 4, dtype: ScalarType.BFloat16, seed: 4))
        {
            valid.Add(KvCacheFormat.Serialize(a));
            valid.Add(KvCacheFormat.Serialize(b));
            valid.Add(KvCacheFormat.Serialize(a, KvCacheQuantization.Int8PerChannel));
        }
        int n = Iterations(3000);
        int read = 0, rejected = 0, resealed = 0;
        long worstManaged = 0, worstTensorBytesPerInputByte = 0;
        await Task.Run(() =>
        {
            var random = new Random(20250101);
            for (int i = 0; i < n; i++)
            {
                byte[] source = valid[i % valid.Count];
                byte[] mutant = Mutate(source, HeaderEnd(source), random, out string how);
                // Half the mutants get a correct checksum again, so the parser behind the checksum is exercised too.
                if (random.Next(2) == 0 && Reseal(mutant)) { resealed++; how += " (resealed)"; }
                long before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    using var entry = KvCacheFormat.Deserialize(mutant);
                    Assert.Equal(entry.Length, entry.TokenIds.Count);
                    worstTensorBytesPerInputByte = Math.Max(worstTensorBytesPerInputByte, entry.ByteSize / mutant.Length);
                    read++;
                }
                catch (KvCacheFormatException)
                {
                    rejected++;
                }
                catch (Exception e)
                {
                    Assert.Fail($"Mutation {i} ({how}) threw {e.GetType().Name}: {e.Message}");
                }
                long managed = GC.GetAllocatedBytesForCurrentThread() - before;
                worstManaged = Math.Max(worstManaged, managed - 8L * mutant.Length);
            }
        }).WaitAsync(Bound);
        output.WriteLine($"cache-entry mutations: {n} inputs ({resealed} resealed), {read} read cleanly, {rejected} rejected as KvCacheFormatException, 0 other outcomes; "
            + $"largest managed allocation beyond 8x the input: {worstManaged} bytes; largest tensor bytes per input byte: {worstTensorBytesPerInputByte}");
        Assert.True(rejected > n / 4, "most mutants must be refused");
        Assert.True(read > 0, "some mutants (e.g. a changed data byte, resealed) must still read");
        Assert.True(worstManaged < 1 << 20, $"a parse allocated {worstManaged} bytes beyond 8x its input");
        Assert.True(worstTensorBytesPerInputByte <= 4, "a read may widen int8 to fp32 at most");
    }

    [Fact]
    public async Task Tokenizer_json_mutated_loads_cleanly_or_fails_as_InvalidDataException()
    {
        string validPath = TinyByteLevelTokenizer.Write(_dir.Path);
        byte[] valid = File.ReadAllBytes(validPath);
        string path = _dir.File("mutant-tokenizer.json");
        int n = Iterations(400);
        int read = 0, rejected = 0;
        long worstManaged = 0;
        await Task.Run(() =>
        {
            var random = new Random(77);
            for (int i = 0; i < n; i++)
            {
                byte[] mutant = MutateText(valid, random, out string how);
                File.WriteAllBytes(path, mutant);
                long before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    var tokenizer = HuggingFaceTokenizerJsonReader.Load(path);
                    // A clean load is a usable tokenizer: it encodes and decodes without failing. (Its output may
                    // differ from the original's: a mutated but valid vocabulary or split pattern is a different tokenizer.)
                    var ids = tokenizer.Encode("hello wörld 日本 <|eot_id|>");
                    Assert.All(ids, id => Assert.InRange(id, 0, TokenByteTableMax));
                    _ = tokenizer.Decode(ids);
                    read++;
                }
                catch (InvalidDataException) { rejected++; }
                catch (Exception e) { Assert.Fail($"Mutation {i} ({how}) threw {e.GetType().Name}: {e.Message}"); }
                worstManaged = Math.Max(worstManaged, GC.GetAllocatedBytesForCurrentThread() - before);
            }
        }).WaitAsync(Bound);
        output.WriteLine($"tokenizer.json mutations: {n} inputs of ~{valid.Length} bytes, {read} loaded cleanly, {rejected} rejected as InvalidDataException, 0 other outcomes; largest managed allocation per load: {worstManaged >> 10} KiB");
        Assert.True(read > 0 && rejected > 0, $"both outcomes must occur ({read} read, {rejected} rejected)");
    }

    [Fact]
    public async Task Config_json_mutated_loads_cleanly_or_fails_as_InvalidDataException()
    {
        var config0 = SyntheticCheckpoint.SmallConfig(hidden: 64, layers: 2, heads: 4, kvHeads: 2) with { RopeScaling = new(8, 1, 4, 8192) };
        byte[] valid = Encoding.UTF8.GetBytes(config0.ToJson());
        string path = _dir.File("config.json");
        int n = Iterations(3000);
        int read = 0, rejected = 0;
        long worstManaged = 0;
        await Task.Run(() =>
        {
            var random = new Random(99);
            for (int i = 0; i < n; i++)
            {
                byte[] mutant = MutateText(valid, random, out string how);
                File.WriteAllBytes(path, mutant);
                long before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    var config = LlamaConfig.Load(path);
                    Assert.True(config.HiddenSize > 0 && config.NumHiddenLayers > 0 && config.VocabSize > 0, how);
                    read++;
                }
                catch (InvalidDataException) { rejected++; }
                catch (Exception e) { Assert.Fail($"Mutation {i} ({how}) threw {e.GetType().Name}: {e.Message}"); }
                worstManaged = Math.Max(worstManaged, GC.GetAllocatedBytesForCurrentThread() - before);
            }
        }).WaitAsync(Bound);
        output.WriteLine($"config.json mutations: {n} inputs of {valid.Length} bytes, {read} loaded cleanly, {rejected} rejected as InvalidDataException, 0 other outcomes; largest managed allocation per load: {worstManaged >> 10} KiB");
        Assert.True(read > 0 && rejected > 0, $"both outcomes must occur ({read} read, {rejected} rejected)");
        Assert.True(worstManaged < 1 << 20, $"a {valid.Length}-byte config allocated {worstManaged} bytes");
    }

    [Fact]
    public async Task Config_numbers_set_to_hostile_values_load_a_bounded_model_or_fail_before_allocating()
    {
        // Every number of a real checkpoint's config.json, one at a time, set to every hostile value; then random
        // pairs and triples. Loaded through LlamaCheckpoint.Load, so the header check is exercised too.
        var c = SyntheticCheckpoint.SmallConfig(hidden: 32, layers: 2, heads: 4, kvHeads: 2);
        SyntheticCheckpoint.Write(_dir.Path, c);
        string configPath = _dir.File("config.json");
        string valid = File.ReadAllText(configPath);
        long fileBytes = new FileInfo(_dir.File("model.safetensors")).Length;
        var numbers = NumberToken.Matches(valid).ToArray();
        var inputs = new List<(string Json, string How)>();
        foreach (var at in numbers)
            foreach (string value in HostileNumbers)
                inputs.Add((Replace(valid, [(at, value)]), $"{Field(valid, at)} -> {value}"));
        int single = inputs.Count;
        var random = new Random(1919);
        for (int i = 0, n = Iterations(300); i < n; i++)
        {
            var picks = numbers.OrderBy(_ => random.Next()).Take(2 + random.Next(2))
                .Select(at => (at, HostileNumbers[random.Next(HostileNumbers.Length)])).ToArray();
            inputs.Add((Replace(valid, picks), string.Join(", ", picks.Select(p => $"{Field(valid, p.at)} -> {p.Item2}"))));
        }

        int loaded = 0, rejected = 0;
        long worstManaged = 0, worstModelBytes = 0, peakRss = Environment.WorkingSet, rss0 = peakRss;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await Task.Run(() =>
        {
            foreach (var (json, how) in inputs)
            {
                File.WriteAllText(configPath, json);
                long tensors = Tensor.TotalCount, before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    using var model = LlamaCheckpoint.Load(_dir.Path, ScalarType.Float32);
                    long bytes = model.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
                    worstModelBytes = Math.Max(worstModelBytes, bytes);
                    Assert.True(bytes <= 2 * fileBytes, $"{how}: a {bytes}-byte model from a {fileBytes}-byte file");
                    loaded++;
                }
                catch (InvalidDataException)
                {
                    Assert.True(Tensor.TotalCount <= tensors, $"{how}: refused only after allocating tensors"); // <=: finalizers of earlier tests' tensors may run meanwhile
                    rejected++;
                }
                catch (Exception e) { Assert.Fail($"{how} threw {e.GetType().Name}: {e.Message}"); }
                worstManaged = Math.Max(worstManaged, GC.GetAllocatedBytesForCurrentThread() - before);
                peakRss = Math.Max(peakRss, Environment.WorkingSet);
            }
        }).WaitAsync(Bound);
        output.WriteLine($"config.json hostile numbers: {inputs.Count} inputs ({numbers.Length} numbers x {HostileNumbers.Length} values = {single} single, "
            + $"{inputs.Count - single} random pairs/triples), {loaded} loaded, {rejected} rejected as InvalidDataException, 0 other outcomes; "
            + $"largest model {worstModelBytes} bytes from a {fileBytes}-byte file; largest managed allocation per load {worstManaged >> 10} KiB; "
            + $"RSS {rss0 >> 20} -> peak {peakRss >> 20} MiB; {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(loaded > 0 && rejected > 0, $"both outcomes must occur ({loaded} loaded, {rejected} rejected)");
        Assert.True(worstManaged < 4 << 20, $"a load allocated {worstManaged} managed bytes");
        Assert.True(peakRss - rss0 < 512L << 20, $"RSS grew from {rss0 >> 20} to {peakRss >> 20} MiB");
    }

    [Fact]
    public async Task Tiktoken_file_mutated_loads_cleanly_or_fails_as_InvalidDataException()
    {
        // original/tokenizer.model of a checkpoint folder: the first 400 ranks of cl100k, read through FromCheckpointFolder.
        Directory.CreateDirectory(_dir.File("original"));
        string path = _dir.File("original/tokenizer.model");
        string[] lines;
        using (var reader = new StreamReader(Cl100kTestData.OpenTiktoken()))
            lines = [.. Enumerable.Range(0, 400).Select(_ => reader.ReadLine()!)];
        byte[] valid = Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n");
        int n = Iterations(400);
        int read = 0, rejected = 0;
        long worstManaged = 0;
        await Task.Run(() =>
        {
            var random = new Random(128000);
            for (int i = 0; i < n; i++)
            {
                byte[] mutant = MutateText(valid, random, out string how);
                File.WriteAllBytes(path, mutant);
                long before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    var tokenizer = LlamaTokenizer.FromCheckpointFolder(_dir.Path);
                    var ids = tokenizer.Encode("the cat <|eot_id|>");
                    Assert.All(ids, id => Assert.InRange(id, 0, TokenByteTableMax));
                    _ = tokenizer.Decode(ids);
                    read++;
                }
                catch (InvalidDataException) { rejected++; }
                catch (Exception e) { Assert.Fail($"Mutation {i} ({how}) threw {e.GetType().Name}: {e.Message}"); }
                worstManaged = Math.Max(worstManaged, GC.GetAllocatedBytesForCurrentThread() - before);
            }
        }).WaitAsync(Bound);
        output.WriteLine($"tokenizer.model (tiktoken) mutations: {n} inputs of {valid.Length} bytes, {read} loaded cleanly, {rejected} rejected as InvalidDataException, 0 other outcomes; largest managed allocation per load: {worstManaged >> 10} KiB");
        Assert.True(read > 0 && rejected > 0, $"both outcomes must occur ({read} read, {rejected} rejected)");
    }

    private static string Replace(string text, (Match At, string Value)[] edits)
    {
        foreach (var (at, value) in edits.OrderByDescending(e => e.At.Index))
            text = text[..at.Index] + value + text[(at.Index + at.Length)..];
        return text;
    }

    /// <summary>The JSON key a number belongs to (for messages): the last quoted name before it.</summary>
    private static string Field(string json, Match at)
    {
        int colon = json.LastIndexOf("\":", at.Index, StringComparison.Ordinal);
        int open = colon < 0 ? -1 : json.LastIndexOf('"', colon - 1);
        return open < 0 ? $"number at {at.Index}" : json[(open + 1)..colon];
    }

    private const int TokenByteTableMax = (1 << 24) - 1;

    private static int HeaderEnd(byte[] file) => 8 + (int)BitConverter.ToInt64(file, 0);

    /// <summary>Writes a correct checksum into a mutant whose checksum field is still intact (see docs/cache-format.md).</summary>
    private static bool Reseal(byte[] m)
    {
        if (m.Length < 8) return false;
        long declared = BitConverter.ToInt64(m, 0);
        if (declared <= 0 || declared > m.Length - 8) return false;
        var pattern = "\"kvlink.checksum\":\"xxh128:"u8;
        int at = m.AsSpan(8, (int)declared).IndexOf(pattern);
        if (at < 0 || 8 + at + pattern.Length + 32 > m.Length) return false;
        int digits = 8 + at + pattern.Length;
        m.AsSpan(digits, 32).Fill((byte)'0');
        Encoding.ASCII.GetBytes(Convert.ToHexStringLower(XxHash128.Hash(m))).CopyTo(m, digits);
        return true;
    }

    private static byte[] Mutate(byte[] valid, int headerEnd, Random random, out string how)
    {
        byte[] m = (byte[])valid.Clone();
        switch (random.Next(7))
        {
            case 0: { int at = random.Next(m.Length); m[at] = (byte)random.Next(256); how = $"byte {at}"; return m; }
            case 1: { int at = 8 + random.Next(headerEnd - 8); m[at] = (byte)JsonChars[random.Next(JsonChars.Length)]; how = $"json char at {at}"; return m; }
            case 2:
            {
                var digits = Enumerable.Range(8, headerEnd - 8).Where(j => char.IsAsciiDigit((char)m[j])).ToArray();
                int at = digits[random.Next(digits.Length)];
                m[at] = (byte)('0' + random.Next(10));
                how = $"digit at {at}";
                return m;
            }
            case 3: { int length = random.Next(m.Length); how = $"truncate to {length}"; return m[..length]; }
            case 4:
            {
                long declared = random.Next(2) == 0 ? headerEnd - 8 + random.Next(-16, 17) : random.NextInt64();
                BitConverter.GetBytes(declared).CopyTo(m, 0);
                how = $"header length {declared}";
                return m;
            }
            case 5: { int at = headerEnd + random.Next(m.Length - headerEnd); m[at] ^= (byte)(1 << random.Next(8)); how = $"data bit at {at}"; return m; }
            default:
            {
                for (int k = 0; k < 4; k++) m[8 + random.Next(headerEnd - 8)] = (byte)random.Next(256);
                how = "burst";
                return m;
            }
        }
    }

    /// <summary>
    /// Values a hostile file may put where a number belongs: huge, negative, zero, non-finite, fractional,
    /// numbers as strings, and other JSON kinds (issue #19).
    /// </summary>
    private static readonly string[] HostileNumbers =
    [
        "0", "-1", "1", "2", "3", "2147483647", "2147483648", "-2147483648", "9223372036854775807", "99999999999999999999",
        "1e9", "1e308", "1e999", "-1e999", "1e-300", "0.5", "1.5", "16.0", "\"16\"", "\"NaN\"", "\"Infinity\"",
        "true", "null", "[]", "{}",
    ];

    /// <summary>A JSON number (or a tiktoken rank) standing alone, not digits inside a name or base64.</summary>
    private static readonly Regex NumberToken = new(@"(?<![A-Za-z0-9+/=._""-])-?\d+(\.\d+)?([eE][+-]?\d+)?(?![A-Za-z0-9_""])", RegexOptions.Compiled);

    /// <summary>Mutations of a JSON text: bytes, JSON characters, digits, deletions, duplications, truncation, hostile numbers.</summary>
    private static byte[] MutateText(byte[] valid, Random random, out string how)
    {
        var m = new List<byte>(valid);
        switch (random.Next(7))
        {
            case 6:
            {
                string text = Encoding.UTF8.GetString(valid);
                var numbers = NumberToken.Matches(text);
                if (numbers.Count == 0) goto case 0;
                var at = numbers[random.Next(numbers.Count)];
                string value = HostileNumbers[random.Next(HostileNumbers.Length)];
                how = $"number '{at.Value}' at {at.Index} -> {value}";
                return Encoding.UTF8.GetBytes(text[..at.Index] + value + text[(at.Index + at.Length)..]);
            }
            case 0: { int at = random.Next(m.Count); m[at] = (byte)random.Next(256); how = $"byte {at}"; break; }
            case 1: { int at = random.Next(m.Count); m[at] = (byte)JsonChars[random.Next(JsonChars.Length)]; how = $"json char at {at}"; break; }
            case 2:
            {
                var digits = Enumerable.Range(0, m.Count).Where(j => char.IsAsciiDigit((char)m[j])).ToArray();
                int at = digits[random.Next(digits.Length)];
                m[at] = (byte)('0' + random.Next(10));
                if (random.Next(4) == 0) m.InsertRange(at, Encoding.ASCII.GetBytes(random.Next(2) == 0 ? "-" : "99999999999"));
                how = $"digit at {at}";
                break;
            }
            case 3: { int at = random.Next(m.Count); int len = Math.Min(m.Count - at, 1 + random.Next(40)); m.RemoveRange(at, len); how = $"delete {len} at {at}"; break; }
            case 4:
            {
                int at = random.Next(m.Count), len = Math.Min(m.Count - at, 1 + random.Next(60)), to = random.Next(m.Count);
                m.InsertRange(to, m.GetRange(at, len));
                how = $"copy {len} from {at} to {to}";
                break;
            }
            default: { int length = random.Next(m.Count); how = $"truncate to {length}"; return [.. m.Take(length)]; }
        }
        return [.. m];
    }
}
