using System.Globalization;
using System.Text.Json;
using KVLink.Core.Model;
using KVLink.Core.Model.SafeTensors;
using KVLink.Core.Native;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Engine;

/// <summary>Checks a checkpoint folder before anyone waits for its weights to load (<see cref="KvLinkCheckpointReport.Inspect"/>).</summary>
internal static class CheckpointInspection
{
    /// <summary>
    /// Reads what <c>KvLinkEngine.LoadAsync</c> would read from <paramref name="folder"/>, except the weights themselves:
    /// config.json, the safetensors headers (every shard, checked against the config's shapes), the tokenizer,
    /// kvlink_prompt.json and the prompt format's special tokens. Never throws for a broken folder: every problem is a line
    /// of <see cref="KvLinkCheckpointReport.Problems"/> naming the file. Reads headers only, so a multi-gigabyte checkpoint
    /// is inspected in about the time its tokenizer takes to parse.
    /// </summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="dtype">The dtype the engine would run at (<see cref="KvLinkOptions.DType"/>), for the memory estimate.</param>
    public static KvLinkCheckpointReport Inspect(string folder, ComputeDType dtype = ComputeDType.Auto)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        string full = Path.GetFullPath(folder);
        var found = new List<string>();
        var problems = new List<string>();
        var tier = CpuCapabilities.Current.Tier;
        string cpuTier = tier.Name();
        // Auto is estimated by the table alone (no calibration GEMMs for a report): bf16 where the CPU has bf16 units.
        if (dtype == ComputeDType.Auto) dtype = tier.ComputesBf16Natively() ? ComputeDType.BFloat16 : ComputeDType.Float32;
        if (!Directory.Exists(full))
        {
            problems.Add($"The folder '{full}' does not exist.");
            return new KvLinkCheckpointReport { Folder = full, Found = found, Problems = problems, DType = dtype, CpuTier = cpuTier };
        }

        var config = ReadConfig(full, found, problems);
        long? parameters = ReadWeights(full, config, found, problems);
        var tokenizer = ReadTokenizer(full, config, found, problems);
        ReadPromptFormat(full, tokenizer, found, problems);

        int element = dtype == ComputeDType.Float32 ? 4 : 2;
        return new KvLinkCheckpointReport
        {
            Folder = full,
            Found = found,
            Problems = problems,
            DType = dtype,
            CpuTier = cpuTier,
            Parameters = parameters,
            WeightBytes = parameters * element,
            CacheBytesPer1kTokens = config is null ? null : 2L * config.NumHiddenLayers * config.NumKeyValueHeads * config.HeadDim * element * 1024,
        };
    }

    private static LlamaConfig? ReadConfig(string folder, List<string> found, List<string> problems)
    {
        string path = Path.Combine(folder, "config.json");
        if (!File.Exists(path))
        {
            problems.Add($"No config.json in '{folder}': a Hugging Face Llama checkpoint needs one.");
            return null;
        }
        try
        {
            var c = LlamaConfig.Load(path);
            string scaling = c.RopeScaling is { } r ? string.Create(CultureInfo.InvariantCulture, $" (llama3 scaling x{r.Factor})") : "";
            found.Add(string.Create(CultureInfo.InvariantCulture,
                $"config.json: Llama, {c.NumHiddenLayers} layers, hidden {c.HiddenSize}, {c.NumAttentionHeads} heads ({c.NumKeyValueHeads} KV heads, head_dim {c.HeadDim}), FFN {c.IntermediateSize}, vocabulary {c.VocabSize}, {c.MaxPositionEmbeddings} positions, RoPE theta {c.RopeTheta}{scaling}{(c.TieWordEmbeddings ? ", tied embeddings" : "")}{(c.TorchDtype is { } d ? ", saved as " + d : "")}"));
            return c;
        }
        catch (Exception e) when (e is InvalidDataException or JsonException or IOException or UnauthorizedAccessException)
        {
            problems.Add($"config.json: {e.Message}");
            return null;
        }
    }

    private static long? ReadWeights(string folder, LlamaConfig? config, List<string> found, List<string> problems)
    {
        try
        {
            using var tensors = CheckpointTensors.Open(folder);
            long parameters = 0, bytes = 0;
            var dtypes = new SortedSet<string>(StringComparer.Ordinal);
            foreach (string name in tensors.Names)
            {
                var info = tensors.Info(name);
                parameters += info.Shape.Aggregate(1L, (a, b) => a * b);
                bytes += info.ByteLength;
                dtypes.Add(info.DType);
            }
            string files = File.Exists(Path.Combine(folder, CheckpointTensors.SingleFileName))
                ? CheckpointTensors.SingleFileName
                : $"{CheckpointIndex.FileName} and its shards";
            found.Add($"{files}: {tensors.Names.Count} tensors, {Count(parameters)} parameters in {string.Join("/", dtypes)}, {Bytes(bytes)} of data");
            if (config is not null)
            {
                try { LlamaTensorShapes.Verify(config, tensors, Path.Combine(folder, "config.json")); }
                catch (InvalidDataException e) { problems.Add(e.Message); }
            }
            return parameters;
        }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or IOException or UnauthorizedAccessException)
        {
            problems.Add($"Weights: {e.Message}");
            return null;
        }
    }

    private static LlamaTokenizer? ReadTokenizer(string folder, LlamaConfig? config, List<string> found, List<string> problems)
    {
        try
        {
            var tokenizer = LlamaTokenizer.FromCheckpointFolder(folder);
            string file = File.Exists(Path.Combine(folder, "tokenizer.json")) ? "tokenizer.json" : "original/tokenizer.model";
            found.Add($"{file}: {tokenizer.VocabSize} token ids, {tokenizer.SpecialTokens.Count} special tokens ({tokenizer.SpecialTokenSource})");
            if (config is not null && tokenizer.VocabSize > config.VocabSize)
                problems.Add($"The tokenizer has {tokenizer.VocabSize} token ids but config.json's vocab_size is {config.VocabSize}: this tokenizer is not the model's.");
            return tokenizer;
        }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            problems.Add($"Tokenizer: {e.Message}");
            return null;
        }
    }

    private static void ReadPromptFormat(string folder, LlamaTokenizer? tokenizer, List<string> found, List<string> problems)
    {
        try
        {
            found.Add(PromptSettingsFile.Read(folder) is { } s
                ? $"{PromptSettingsFile.FileName}: {(s.SlotFree ? "slot-free" : "numbered")} document header, system text " +
                  (s.SystemText is null ? "the published one" : $"\"{s.SystemText}\"")
                : $"no {PromptSettingsFile.FileName}: the published prompt (numbered document header, published system text)");
            if (tokenizer is null) return;
            var format = PromptSettingsFile.FormatFor(folder, tokenizer);
            found.Add($"prompt format: link-token ids {format.LinkTokenStart}..{format.LinkTokenStart + format.LinkTokenIdCount - 1} " +
                      $"(K link tokens x N documents <= {format.LinkTokenIdCount}), <mem_start> {format.MemStart}, <mem_end> {format.MemEnd}, " +
                      $"stops on {string.Join(", ", format.StopTokenIds)}");
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            problems.Add($"Prompt format: {e.Message}");
        }
    }

    private static string Count(long n) => n switch
    {
        >= 1_000_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e9:F2}B"),
        >= 1_000_000 => string.Create(CultureInfo.InvariantCulture, $"{n / 1e6:F1}M"),
        _ => n.ToString("N0", CultureInfo.InvariantCulture),
    };

    /// <summary>Bytes in binary units (MiB, GiB), as memory is sized.</summary>
    internal static string Bytes(long n) => n switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{n / (double)(1L << 30):F2} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{n / (double)(1L << 20):F1} MiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{n / 1024.0:F1} KiB"),
    };
}
