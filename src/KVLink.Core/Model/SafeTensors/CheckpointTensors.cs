using TorchSharp;

namespace KVLink.Core.Model.SafeTensors;

/// <summary>
/// The tensors of a Hugging Face checkpoint folder: either one <c>model.safetensors</c> or shards listed in
/// <c>model.safetensors.index.json</c>. Every shard is opened and validated up front, so a broken
/// checkpoint fails at <see cref="Open"/> rather than halfway through loading a model.
/// </summary>
internal sealed class CheckpointTensors : IDisposable
{
    /// <summary>File name of a single-file checkpoint.</summary>
    public const string SingleFileName = "model.safetensors";

    private readonly Dictionary<string, SafeTensorsFile> _owner;
    private readonly List<SafeTensorsFile> _files;

    private CheckpointTensors(string folder, Dictionary<string, SafeTensorsFile> owner, List<SafeTensorsFile> files)
    {
        Folder = folder;
        _owner = owner;
        _files = files;
        Names = owner.Keys.Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>The checkpoint folder.</summary>
    public string Folder { get; }

    /// <summary>Every tensor name, in ordinal order.</summary>
    public IReadOnlyCollection<string> Names { get; }

    /// <summary>Opens a checkpoint folder, preferring <c>model.safetensors</c> over the shard index.</summary>
    /// <exception cref="FileNotFoundException">Neither file exists, or a listed shard is missing.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="InvalidDataException">The index or a shard is malformed, or a listed tensor is not in its shard.</exception>
    public static CheckpointTensors Open(string folder)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: checkpoint folder not found");

        string single = Path.Combine(folder, SingleFileName);
        if (File.Exists(single))
        {
            var file = SafeTensorsFile.Open(single);
            return new CheckpointTensors(folder, file.Tensors.Keys.ToDictionary(n => n, _ => file, StringComparer.Ordinal), [file]);
        }

        string indexPath = Path.Combine(folder, CheckpointIndex.FileName);
        if (!File.Exists(indexPath))
            throw new FileNotFoundException($"{folder}: neither {SingleFileName} nor {CheckpointIndex.FileName} exists", indexPath);
        return OpenSharded(folder, indexPath);
    }

    private static CheckpointTensors OpenSharded(string folder, string indexPath)
    {
        var weightMap = CheckpointIndex.ReadWeightMap(indexPath);
        var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            var owner = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
            foreach (var (tensor, shardName) in weightMap)
            {
                if (!shards.TryGetValue(shardName, out var shard))
                {
                    string shardPath = Path.Combine(folder, shardName);
                    if (!File.Exists(shardPath))
                        throw new FileNotFoundException($"{indexPath}: shard '{shardName}' listed for tensor '{tensor}' does not exist", shardPath);
                    shard = SafeTensorsFile.Open(shardPath);
                    shards.Add(shardName, shard);
                }
                if (!shard.Tensors.ContainsKey(tensor))
                    throw SafeTensorsHeader.Bad(indexPath, tensor, $"listed in weight_map but absent from shard '{shardName}'");
                owner.Add(tensor, shard);
            }
            return new CheckpointTensors(folder, owner, shards.Values.ToList());
        }
        catch
        {
            foreach (var s in shards.Values) s.Dispose();
            throw;
        }
    }

    /// <summary>Header entry of a tensor.</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no tensor of that name.</exception>
    public SafeTensorInfo Info(string name) => FileOf(name).Tensors[name];

    /// <summary>Path of the safetensors file holding a tensor (for error messages).</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no tensor of that name.</exception>
    public string PathOf(string name) => FileOf(name).Path;

    /// <summary>Reads a tensor into a new CPU tensor of its stored dtype and shape.</summary>
    /// <exception cref="KeyNotFoundException">The checkpoint has no tensor of that name.</exception>
    public torch.Tensor Read(string name) => FileOf(name).Read(name);

    /// <summary>Closes every shard.</summary>
    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }

    private SafeTensorsFile FileOf(string name) =>
        _owner.TryGetValue(name, out var file) ? file : throw new KeyNotFoundException($"{Folder}: no tensor named '{name}'");
}
