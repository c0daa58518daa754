using System.Text.Json;
using TorchSharp;
using KVLink.Core.IO;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>Writes Hugging Face style checkpoints: one <c>model.safetensors</c>, or shards plus an index.</summary>
internal static class CheckpointWriter
{
    /// <summary>
    /// Splits <paramref name="tensors"/> (in ordinal name order) into <paramref name="shardCount"/> shards
    /// <c>model-0000i-of-0000n.safetensors</c> of consecutive names with roughly equal tensor counts, then
    /// writes <c>model.safetensors.index.json</c>. The index is written last, so it never lists a shard
    /// that is not complete on disk.
    /// </summary>
    /// <param name="folder">Target folder; created if needed.</param>
    /// <param name="tensors">Named tensors; not modified.</param>
    /// <param name="shardCount">Number of shards, between 1 and the number of tensors.</param>
    /// <param name="metadata">Optional metadata stored in every shard.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shardCount"/> is out of range.</exception>
    public static void WriteSharded(string folder, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, int shardCount, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var ordered = tensors.OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        // Checked here too: the per-shard writer cannot see a name repeated across two shards.
        for (int i = 1; i < ordered.Count; i++)
        {
            if (ordered[i].Key == ordered[i - 1].Key) throw new ArgumentException($"Tensor name '{ordered[i].Key}' appears twice.", nameof(tensors));
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(shardCount, Math.Max(1, ordered.Count));
        Directory.CreateDirectory(folder);

        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long totalSize = 0;
        for (int s = 0; s < shardCount; s++)
        {
            // Even split by count: shard s gets names [s*n/k, (s+1)*n/k).
            var part = ordered.Skip(s * ordered.Count / shardCount).Take((s + 1) * ordered.Count / shardCount - s * ordered.Count / shardCount).ToList();
            string shardName = $"model-{s + 1:D5}-of-{shardCount:D5}.safetensors";
            SafeTensorsWriter.Write(Path.Combine(folder, shardName), part, metadata);
            foreach (var (name, tensor) in part)
            {
                weightMap[name] = shardName;
                totalSize += tensor.numel() * tensor.ElementSize;
            }
        }

        AtomicFile.Write(Path.Combine(folder, CheckpointIndex.FileName), stream =>
        {
            using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            json.WriteStartObject();
            json.WriteStartObject("metadata");
            json.WriteNumber("total_size", totalSize);
            json.WriteEndObject();
            json.WriteStartObject("weight_map");
            foreach (var (name, shard) in weightMap) json.WriteString(name, shard);
            json.WriteEndObject();
            json.WriteEndObject();
        });
    }

    /// <summary>Writes a single-file checkpoint, <c>model.safetensors</c>, into <paramref name="folder"/>.</summary>
    public static void WriteSingle(string folder, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        Directory.CreateDirectory(folder);
        SafeTensorsWriter.Write(Path.Combine(folder, CheckpointTensors.SingleFileName), tensors, metadata);
    }
}
