using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Engine;

/// <summary>
/// What <see cref="KvLinkEngine.LoadAsync"/> reads from a Hugging Face checkpoint folder: the model (on the device and in
/// the dtype the options resolve to), its tokenizer, the prompt format it was trained with (null where neither the options
/// nor the folder name one: the tokenizer's default) and the model's name. The caller owns <see cref="Model"/>.
/// </summary>
internal sealed record LoadedCheckpoint(LlamaForCausalLM Model, LlamaTokenizer Tokenizer, PromptFormat? Format, ComputeDTypeChoice Choice, string ModelId)
{
    /// <summary>Loads <paramref name="folder"/> with validated <paramref name="options"/>; nothing stays allocated when it throws.</summary>
    public static LoadedCheckpoint Load(string folder, KvLinkOptions options)
    {
        // Before the tokenizer and the weights: a wrong path or a missing runtime package is named as such, not as a
        // missing tokenizer or a native loader error.
        IO.CheckpointFolder.ThrowIfMissing(folder);
        Native.TorchSharpLoader.EnsureRuntime();
        var device = KvLinkDevices.Resolve(options.Device);
        var tokenizer = LlamaTokenizer.FromCheckpointFolder(folder);
        // Auto: bf16 where the hardware computes it natively, else float32 (a calibration GEMM decides where the tier cannot).
        var choice = ComputeDTypeChoice.Resolve(options, device);
        var model = LlamaCheckpoint.Load(folder, choice.ScalarType, device);
        try
        {
            // A folder may carry the prompt settings it was trained with (kvlink_prompt.json, as the demo model does).
            var format = options.PromptFormat ?? PromptSettingsFile.StoredFormat(folder, tokenizer);
            return new LoadedCheckpoint(model, tokenizer, format, choice, CheckpointName.Of(folder));
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
