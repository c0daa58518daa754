using System.Globalization;
using KVLink.Core.Model.SafeTensors;

namespace KVLink.Core.Model;

/// <summary>
/// The tensors a <see cref="LlamaConfig"/> implies, with Hugging Face names and shapes, and their check against a
/// checkpoint's safetensors headers. The check runs before the model is built: once every expected tensor is in
/// the file with the expected shape and a floating-point dtype, the model's memory is bounded by the file's data
/// (at most 2x, for bf16/f16 weights computed in fp32), whatever the config says.
/// </summary>
internal static class LlamaTensorShapes
{
    /// <summary>One expected tensor; <paramref name="Fields"/> names the config fields its shape comes from.</summary>
    public readonly record struct Expected(string Name, long[] Shape, string Fields);

    /// <summary>Every parameter of <see cref="LlamaForCausalLM"/> for <paramref name="c"/>, without lm_head when tied.</summary>
    public static IEnumerable<Expected> Of(LlamaConfig c)
    {
        long h = c.HiddenSize, q = checked((long)c.NumAttentionHeads * c.HeadDim), kv = checked((long)c.NumKeyValueHeads * c.HeadDim);
        const string Q = "num_attention_heads x head_dim", Kv = "num_key_value_heads x head_dim";
        yield return new("model.embed_tokens.weight", [c.VocabSize, h], "vocab_size, hidden_size");
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            yield return new(p + "input_layernorm.weight", [h], "hidden_size");
            yield return new(p + "self_attn.q_proj.weight", [q, h], Q + ", hidden_size");
            yield return new(p + "self_attn.k_proj.weight", [kv, h], Kv + ", hidden_size");
            yield return new(p + "self_attn.v_proj.weight", [kv, h], Kv + ", hidden_size");
            yield return new(p + "self_attn.o_proj.weight", [h, q], "hidden_size, " + Q);
            yield return new(p + "post_attention_layernorm.weight", [h], "hidden_size");
            yield return new(p + "mlp.gate_proj.weight", [c.IntermediateSize, h], "intermediate_size, hidden_size");
            yield return new(p + "mlp.up_proj.weight", [c.IntermediateSize, h], "intermediate_size, hidden_size");
            yield return new(p + "mlp.down_proj.weight", [h, c.IntermediateSize], "hidden_size, intermediate_size");
        }
        yield return new("model.norm.weight", [h], "hidden_size");
        if (!c.TieWordEmbeddings) yield return new("lm_head.weight", [c.VocabSize, h], "vocab_size, hidden_size");
    }

    /// <summary>Checks the layer count, then every expected tensor's presence, shape and dtype; allocates no tensor.</summary>
    /// <exception cref="InvalidDataException">A mismatch; the message names config.json, its fields and the safetensors file.</exception>
    public static void Verify(LlamaConfig c, CheckpointTensors tensors, string configPath)
    {
        int stored = StoredLayers(tensors.Names);
        if (stored != c.NumHiddenLayers)
            throw new InvalidDataException($"{configPath}: 'num_hidden_layers' is {c.NumHiddenLayers}, but the checkpoint in '{tensors.Folder}' has tensors for {stored} layers.");
        foreach (var e in Of(c))
        {
            if (!tensors.Names.Contains(e.Name))
                throw new InvalidDataException($"Checkpoint '{tensors.Folder}' has no tensor '{e.Name}'" +
                    (e.Name == "lm_head.weight" ? $" ({configPath} says tie_word_embeddings is false)." : "."));
            var info = tensors.Info(e.Name);
            if (!info.Shape.SequenceEqual(e.Shape))
                throw new InvalidDataException($"{tensors.PathOf(e.Name)}: tensor '{e.Name}' has shape [{string.Join(", ", info.Shape)}], " +
                    $"but {configPath} implies [{string.Join(", ", e.Shape)}] ({e.Fields}).");
            if (info.DType is not ("F32" or "F16" or "BF16" or "F64"))
                throw new InvalidDataException($"{tensors.PathOf(e.Name)}: tensor '{e.Name}' has dtype {info.DType}; weights must be floating point (BF16, F16, F32).");
        }
    }

    /// <summary>Highest N of the <c>model.layers.N.</c> tensors + 1 (0 when there are none).</summary>
    private static int StoredLayers(IEnumerable<string> names)
    {
        const string Prefix = "model.layers.";
        int count = 0;
        foreach (string name in names)
        {
            if (!name.StartsWith(Prefix, StringComparison.Ordinal)) continue;
            int dot = name.IndexOf('.', Prefix.Length);
            if (dot > Prefix.Length && int.TryParse(name.AsSpan(Prefix.Length, dot - Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int layer) && layer < int.MaxValue)
                count = Math.Max(count, layer + 1);
        }
        return count;
    }
}
