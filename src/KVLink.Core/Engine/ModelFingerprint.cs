using System.Security.Cryptography;
using System.Text;
using KVLink.Core.Model;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Engine;

/// <summary>
/// A stable identity of a loaded model: its config, compute dtype, the names and shapes of its
/// parameters, a strided sample of every parameter's bytes, and every token's bytes. Caches made by one
/// model are never served to another: a different checkpoint, dtype or tokenizer gives a different value.
/// </summary>
public static class ModelFingerprint
{
    private const int SamplesPerParameter = 64, SampleBytes = 32;

    /// <summary>Hex fingerprint (128 bits of SHA-256).</summary>
    public static string Compute(LlamaForCausalLM model, LlamaTokenizer tokenizer)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes(model.Config.ToJson()));
        sha.AppendData(Encoding.UTF8.GetBytes(model.DType.ToString()));
        foreach (var (name, p) in model.named_parameters().OrderBy(p => p.name, StringComparer.Ordinal))
        {
            sha.AppendData(Encoding.UTF8.GetBytes($"{name}:{string.Join('x', p.shape)};"));
            using var cpu = p.device_type == TorchSharp.DeviceType.CPU ? p.alias() : p.cpu();
            ReadOnlySpan<byte> bytes = cpu.bytes;
            long stride = Math.Max(1, bytes.Length / SamplesPerParameter);
            for (long at = 0; at < bytes.Length; at += stride)
                sha.AppendData(bytes.Slice((int)at, (int)Math.Min(SampleBytes, bytes.Length - at)));
        }
        for (int id = 0; id < tokenizer.VocabSize; id++)
        {
            sha.AppendData(BitConverter.GetBytes(id));
            sha.AppendData(tokenizer.TokenBytes(id));
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..32];
    }
}
