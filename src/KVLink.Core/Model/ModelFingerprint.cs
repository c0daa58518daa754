using System.IO.Hashing;
using System.Text;
using KVLink.Core.Model;
using KVLink.Core.Model.SafeTensors;
using KVLink.Core.Tokenization;
using TorchSharp;

namespace KVLink.Core.Model;

/// <summary>
/// A stable identity of a loaded model: its config, compute dtype, the names and shapes of its parameters,
/// <b>every byte</b> of every parameter as loaded, and every token's bytes. Caches made by one model are never
/// served to another: a fine-tuned variant with the same config, another dtype or another tokenizer gives a
/// different value. XxHash128 runs at memory bandwidth, so hashing all weights costs a fraction of reading them
/// (docs/reliability.md has the figure for the 1B shape).
/// </summary>
internal static class ModelFingerprint
{
    /// <summary>Hex fingerprint (128 bits of XxHash128).</summary>
    public static string Compute(LlamaForCausalLM model, LlamaTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        var hash = new XxHash128();
        Append(hash, "kvlink-fingerprint-v2;" + model.Config.ToJson() + ";" + model.DType + ";");
        foreach (var (name, p) in model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal))
        {
            Append(hash, $"{name}:{string.Join('x', p.shape)};");
            AppendTensorBytes(hash, p);
        }
        Span<byte> id = stackalloc byte[4];
        for (int i = 0; i < tokenizer.VocabSize; i++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(id, i);
            hash.Append(id);
            // An id no token has (a vocabulary with holes, like cl100k ranks under Llama 3's specials) hashes as length -1.
            var bytes = tokenizer.HasToken(i) ? tokenizer.TokenBytes(i) : default;
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(id, tokenizer.HasToken(i) ? bytes.Length : -1);
            hash.Append(id);
            hash.Append(bytes);
        }
        return Convert.ToHexStringLower(hash.GetCurrentHash());
    }

    private static void Append(XxHash128 hash, string text) => hash.Append(Encoding.UTF8.GetBytes(text));

    /// <summary>All bytes of a tensor, as stored (on the CPU; a GPU tensor is copied first).</summary>
    private static void AppendTensorBytes(XxHash128 hash, torch.Tensor p)
    {
        using var cpu = p.device_type == DeviceType.CPU && p.is_contiguous() ? p.alias() : p.detach().cpu().contiguous();
        TensorMemory.ForEachChunk(cpu, TensorMemory.DefaultChunkBytes, (chunk, _) => hash.Append(chunk));
    }
}
