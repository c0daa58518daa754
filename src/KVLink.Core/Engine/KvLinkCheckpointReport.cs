namespace KVLink.Core.Engine;

/// <summary>
/// What <see cref="Inspect"/> found in a checkpoint folder without loading its weights: the files it
/// read, what is wrong with them, and the memory the engine will need to run it.
/// </summary>
public sealed class KvLinkCheckpointReport
{
    /// <summary>
    /// Reads what <see cref="KvLinkEngine.LoadAsync"/> would read from <paramref name="folder"/>, except the weights themselves:
    /// config.json, the safetensors headers (every shard, checked against the config's shapes), the tokenizer,
    /// kvlink_prompt.json and the prompt format's special tokens. Never throws for a broken folder: every problem is a line
    /// of <see cref="Problems"/> naming the file. Reads headers only, so a multi-gigabyte checkpoint is inspected in about
    /// the time its tokenizer takes to parse.
    /// </summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="dtype">The dtype the engine would run at (<see cref="KvLinkOptions.DType"/>), for the memory estimate; <see cref="ComputeDType.Auto"/> is estimated from the CPU tier alone (bf16 where it has bf16 units).</param>
    public static KvLinkCheckpointReport Inspect(string folder, ComputeDType dtype = ComputeDType.Auto) => CheckpointInspection.Inspect(folder, dtype);

    /// <summary>The folder inspected (full path).</summary>
    public required string Folder { get; init; }

    /// <summary>One line per file or fact found (config, weights, tokenizer, prompt settings, link-token ids), in that order.</summary>
    public required IReadOnlyList<string> Found { get; init; }

    /// <summary>One line per problem that would make loading fail or the answers wrong; empty when the folder looks loadable.</summary>
    public required IReadOnlyList<string> Problems { get; init; }

    /// <summary>True when no problem was found: <c>KvLinkEngine.LoadAsync</c> should load the folder.</summary>
    public bool CanLoad => Problems.Count == 0;

    /// <summary>Parameters stored in the safetensors files (a tied <c>lm_head</c> counts once), or null when the weights could not be read.</summary>
    public long? Parameters { get; init; }

    /// <summary>The dtype the memory estimate is for (the engine's <see cref="KvLinkOptions.DType"/>).</summary>
    public required ComputeDType DType { get; init; }

    /// <summary>Bytes of the weights once loaded at <see cref="DType"/>, or null when unknown.</summary>
    public long? WeightBytes { get; init; }

    /// <summary>Bytes of keys and values per 1,024 cached tokens at <see cref="DType"/> (every layer), or null without a config.</summary>
    public long? CacheBytesPer1kTokens { get; init; }

    /// <summary>
    /// The CPU tier the engine's kernels will run on here: "amx", "avx512-bf16", "avx512", "avx2", "arm64-neon" or
    /// "baseline" (the instruction sets .NET reports for this process, and CPUID for AMX and AVX-512 BF16).
    /// </summary>
    public required string CpuTier { get; init; }
}
