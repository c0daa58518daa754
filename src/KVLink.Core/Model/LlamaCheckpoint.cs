using KVLink.Core.Model.SafeTensors;
using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>Loads and saves Hugging Face Llama checkpoint folders (config.json + model.safetensors or a sharded index).</summary>
internal static class LlamaCheckpoint
{
    /// <summary>
    /// Builds the model a folder's config.json describes and loads its weights (bf16, f16 or f32 on disk),
    /// converted to <paramref name="dtype"/>. Tied embeddings need no <c>lm_head.weight</c>; a stored one is used when untied.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="InvalidOperationException">No LibTorch runtime package is referenced (the message names the packages to add).</exception>
    /// <exception cref="FileNotFoundException">config.json or the weights are missing.</exception>
    /// <exception cref="InvalidDataException">Unsupported config or a value outside <see cref="LlamaConfigLimits"/>, a layer count,
    /// missing tensor, shape or dtype that does not match the safetensors header (all checked before the model is allocated),
    /// or a file that is not a regular file or is over its size cap; the message names the file and the field or tensor.</exception>
    public static LlamaForCausalLM Load(string folder, ScalarType dtype = ScalarType.BFloat16, Device? device = null)
    {
        Native.TorchSharpLoader.EnsureRuntime();
        IO.CheckpointFolder.ThrowIfMissing(folder);
        string configPath = Path.Combine(folder, "config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"Checkpoint folder '{folder}' has no config.json.", configPath);
        var config = LlamaConfig.Load(configPath);

        using var tensors = CheckpointTensors.Open(folder);
        // Before anything is allocated: the config's shapes must be the file's, so the file bounds the model's size.
        LlamaTensorShapes.Verify(config, tensors, configPath);
        var model = new LlamaForCausalLM(config, dtype, device);
        try
        {
            using var _ = no_grad();
            foreach (var (name, parameter) in model.named_parameters())
            {
                if (config.TieWordEmbeddings && name == "lm_head.weight") continue; // shares embed_tokens
                using var stored = tensors.Read(name);
                using var converted = stored.to(dtype, parameter.device);
                parameter.copy_(converted);
            }
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Writes config.json and model.safetensors (in the model's dtype; no lm_head when tied), atomically per file.</summary>
    public static void Save(LlamaForCausalLM model, string folder)
    {
        Directory.CreateDirectory(folder);
        var tensors = model.named_parameters()
            .Where(p => !(model.Config.TieWordEmbeddings && p.name == "lm_head.weight"))
            .Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter.detach().cpu().contiguous()))
            .ToList();
        try
        {
            SafeTensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        }
        finally
        {
            foreach (var t in tensors) t.Value.Dispose();
        }
        string dtypeName = model.DType switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", _ => "float32" };
        string configPath = Path.Combine(folder, "config.json");
        string temp = configPath + $".{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temp, (model.Config with { TorchDtype = dtypeName }).ToJson());
        File.Move(temp, configPath, overwrite: true);
    }
}
