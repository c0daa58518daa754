using System.Text;
using KVLink.Core.Model;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Benchmarks;

/// <summary>
/// A minimal GGUF v3 writer for Llama models, so llama.cpp can run exactly our weights:
/// header, metadata key/values (architecture, hyperparameters, a byte-level "gpt2" vocabulary),
/// tensor infos, and the tensor data aligned to 32 bytes. q_proj/k_proj rows are permuted from the
/// Hugging Face rotate_half layout to llama.cpp's interleaved (2i, 2i+1) rotary pairs; llama3 RoPE
/// scaling is written as the <c>rope_freqs.weight</c> factors llama.cpp divides the frequencies by.
/// </summary>
internal static class GgufWriter
{
    private const uint Alignment = 32;
    private enum ValueType : uint { UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7, String = 8, Array = 9 }
    public enum GgmlType : uint { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 }

    public static GgmlType ParseType(string s) => s.ToLowerInvariant() switch
    {
        "f32" => GgmlType.F32, "f16" => GgmlType.F16, "bf16" => GgmlType.BF16, "q8_0" => GgmlType.Q8_0,
        _ => throw new ArgumentException($"GGUF weight type '{s}' is not supported (f32, f16, bf16, q8_0)."),
    };

    /// <summary>Hugging Face q/k rows (rotate_half pairs i, i+d/2) to GGUF rows (pairs 2j, 2j+1), per head.</summary>
    public static Tensor PermuteRotary(Tensor w, int heads)
    {
        long rows = w.shape[0], cols = w.shape[1], hd = rows / heads;
        // GGUF row h*hd + 2j + s = HF row h*hd + s*hd/2 + j.
        return w.view(heads, 2, hd / 2, cols).transpose(1, 2).reshape(rows, cols).contiguous();
    }

    public static void Write(string path, LlamaForCausalLM model, LlamaTokenizer tokenizer, GgmlType weightType, string name = "kvlink-bench")
    {
        var c = model.Config;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

        // Tensors in GGUF naming, values in their stored type.
        var tensors = new List<(string Name, Tensor Value, GgmlType Type)>();
        void Add(string ggufName, Tensor t, bool isMatrix)
        {
            var type = isMatrix ? weightType : GgmlType.F32; // norms and rope factors stay f32, as llama.cpp's converter writes them
            tensors.Add((ggufName, t, type)); // converted one at a time while writing, so the copies never coexist
        }
        Add("token_embd.weight", parameters["model.embed_tokens.weight"], true);
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            Add($"blk.{i}.attn_norm.weight", parameters[p + "input_layernorm.weight"], false);
            Add($"blk.{i}.attn_q.weight", PermuteRotary(parameters[p + "self_attn.q_proj.weight"], c.NumAttentionHeads), true);
            Add($"blk.{i}.attn_k.weight", PermuteRotary(parameters[p + "self_attn.k_proj.weight"], c.NumKeyValueHeads), true);
            Add($"blk.{i}.attn_v.weight", parameters[p + "self_attn.v_proj.weight"], true);
            Add($"blk.{i}.attn_output.weight", parameters[p + "self_attn.o_proj.weight"], true);
            Add($"blk.{i}.ffn_norm.weight", parameters[p + "post_attention_layernorm.weight"], false);
            Add($"blk.{i}.ffn_gate.weight", parameters[p + "mlp.gate_proj.weight"], true);
            Add($"blk.{i}.ffn_up.weight", parameters[p + "mlp.up_proj.weight"], true);
            Add($"blk.{i}.ffn_down.weight", parameters[p + "mlp.down_proj.weight"], true);
        }
        Add("output_norm.weight", parameters["model.norm.weight"], false);
        if (!c.TieWordEmbeddings) Add("output.weight", parameters["lm_head.weight"], true);
        if (c.RopeScaling is not null)
        {
            var plain = RotaryEmbedding.InverseFrequencies(c.HeadDim, c.RopeTheta, null);
            var scaled = RotaryEmbedding.InverseFrequencies(c.HeadDim, c.RopeTheta, c.RopeScaling);
            Add("rope_freqs.weight", tensor(plain.Zip(scaled, (a, b) => a / b).ToArray()), false);
        }

        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new BinaryWriter(file, Encoding.UTF8, leaveOpen: true);
        var kvs = Metadata(c, tokenizer, name, weightType);
        w.Write("GGUF"u8);
        w.Write(3u);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)kvs.Count);
        foreach (var (key, write) in kvs) { WriteString(w, key); write(w); }

        ulong offset = 0;
        var offsets = new List<ulong>();
        foreach (var (tname, value, type) in tensors)
        {
            WriteString(w, tname);
            w.Write((uint)value.dim());
            for (int d = (int)value.dim() - 1; d >= 0; d--) w.Write((ulong)value.shape[d]); // ggml: innermost first
            w.Write((uint)type);
            w.Write(offset);
            offsets.Add(offset);
            offset = Align(offset + (ulong)(type switch { GgmlType.F32 => value.numel() * 4, GgmlType.Q8_0 => value.numel() / 32 * 34, _ => value.numel() * 2 }));
        }
        Pad(w);
        long dataStart = file.Position;
        for (int i = 0; i < tensors.Count; i++)
        {
            var (_, value, type) = tensors[i];
            while ((ulong)(file.Position - dataStart) < offsets[i]) w.Write((byte)0);
            if (type == GgmlType.Q8_0) { WriteQ8_0(w, value); continue; }
            var dtype = type switch { GgmlType.F32 => ScalarType.Float32, GgmlType.F16 => ScalarType.Float16, _ => ScalarType.BFloat16 };
            using var converted = value.to(dtype).contiguous();
            WriteBytes(w, converted);
        }
        Pad(w);
    }

    /// <summary>
    /// ggml's Q8_0: blocks of 32 consecutive values of a row, each an f16 scale d = max|x| / 127 followed by 32 int8
    /// round(x / d): 34 bytes per 32 weights. Written in slices of rows so no full f32 copy exists.
    /// </summary>
    private static void WriteQ8_0(BinaryWriter w, Tensor value)
    {
        long rows = value.shape[0], cols = value.shape[1];
        if (cols % 32 != 0) throw new ArgumentException($"Q8_0 needs rows of a multiple of 32 values, not {cols}.");
        long blocks = cols / 32;
        const long slice = 512;
        for (long r = 0; r < rows; r += slice)
        {
            using var scope = NewDisposeScope();
            long n = Math.Min(slice, rows - r);
            var x = value.narrow(0, r, n).to(ScalarType.Float32).reshape(n * blocks, 32);
            var d = x.abs().amax([1], keepdim: true).div_(127);
            var inv = where(d > 0, d.reciprocal(), zeros_like(d));
            var q = x.mul(inv).round_().clamp_(-127, 127).to(ScalarType.Int8).contiguous();
            var d16 = d.to(ScalarType.Float16).contiguous();
            var qb = q.bytes;
            var db = d16.bytes;
            var out8 = new byte[n * blocks * 34];
            for (long b = 0; b < n * blocks; b++)
            {
                db.Slice((int)(b * 2), 2).CopyTo(out8.AsSpan((int)(b * 34), 2));
                qb.Slice((int)(b * 32), 32).CopyTo(out8.AsSpan((int)(b * 34 + 2), 32));
            }
            w.Write(out8);
        }
    }

    private static void WriteBytes(BinaryWriter w, Tensor t)
    {
        // Tensor.bytes is a span (under 2 GiB): write flat slices of at most 64 MiB.
        using var flat = t.flatten();
        long n = flat.numel(), per = Math.Max(1, (64L << 20) / t.ElementSize);
        for (long at = 0; at < n; at += per)
        {
            using var slice = flat.narrow(0, at, Math.Min(per, n - at));
            w.Write(slice.bytes);
        }
    }

    private static ulong Align(ulong x) => (x + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w)
    {
        long pos = w.BaseStream.Position;
        long target = (long)Align((ulong)pos);
        while (pos++ < target) w.Write((byte)0);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static List<(string Key, Action<BinaryWriter> Write)> Metadata(LlamaConfig c, LlamaTokenizer tokenizer, string name, GgmlType weightType)
    {
        var kv = new List<(string, Action<BinaryWriter>)>();
        void Str(string k, string v) => kv.Add((k, w => { w.Write((uint)ValueType.String); WriteString(w, v); }));
        void U32(string k, uint v) => kv.Add((k, w => { w.Write((uint)ValueType.UInt32); w.Write(v); }));
        void F32(string k, float v) => kv.Add((k, w => { w.Write((uint)ValueType.Float32); w.Write(v); }));
        void Strs(string k, IReadOnlyList<string> v) => kv.Add((k, w =>
        {
            w.Write((uint)ValueType.Array); w.Write((uint)ValueType.String); w.Write((ulong)v.Count);
            foreach (var s in v) WriteString(w, s);
        }));
        void I32s(string k, IReadOnlyList<int> v) => kv.Add((k, w =>
        {
            w.Write((uint)ValueType.Array); w.Write((uint)ValueType.Int32); w.Write((ulong)v.Count);
            foreach (var x in v) w.Write(x);
        }));

        Str("general.architecture", "llama");
        Str("general.name", name);
        U32("general.alignment", Alignment);
        U32("general.file_type", weightType switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, GgmlType.Q8_0 => 7u, _ => 32u });
        U32("llama.context_length", (uint)c.MaxPositionEmbeddings);
        U32("llama.embedding_length", (uint)c.HiddenSize);
        U32("llama.block_count", (uint)c.NumHiddenLayers);
        U32("llama.feed_forward_length", (uint)c.IntermediateSize);
        U32("llama.attention.head_count", (uint)c.NumAttentionHeads);
        U32("llama.attention.head_count_kv", (uint)c.NumKeyValueHeads);
        U32("llama.attention.key_length", (uint)c.HeadDim);
        U32("llama.attention.value_length", (uint)c.HeadDim);
        U32("llama.rope.dimension_count", (uint)c.HeadDim);
        F32("llama.rope.freq_base", (float)c.RopeTheta);
        F32("llama.attention.layer_norm_rms_epsilon", (float)c.RmsNormEps);
        U32("llama.vocab_size", (uint)c.VocabSize);

        // Byte-level BPE vocabulary: ids 0-255 are the bytes in GPT-2's printable byte alphabet, the special tokens
        // keep their names, every unused row gets a unique placeholder. No merges: we feed token ids, never text.
        var tokens = new string[c.VocabSize];
        var types = new int[c.VocabSize];
        var byteChars = Gpt2ByteAlphabet();
        var specials = tokenizer.SpecialTokens.ToDictionary(p => p.Value, p => p.Key);
        for (int i = 0; i < c.VocabSize; i++)
        {
            if (i < 256) { tokens[i] = byteChars[i].ToString(); types[i] = 1; }
            else if (specials.TryGetValue(i, out var s)) { tokens[i] = s; types[i] = 3; }
            else { tokens[i] = $"<|unused_{i}|>"; types[i] = 4; }
        }
        Str("tokenizer.ggml.model", "gpt2");
        Str("tokenizer.ggml.pre", "default");
        Strs("tokenizer.ggml.tokens", tokens);
        I32s("tokenizer.ggml.token_type", types);
        Strs("tokenizer.ggml.merges", []);
        if (c.BosTokenId is int bos) U32("tokenizer.ggml.bos_token_id", (uint)bos);
        if (c.EosTokenIds.Count > 0) U32("tokenizer.ggml.eos_token_id", (uint)c.EosTokenIds[0]);
        kv.Add(("tokenizer.ggml.add_bos_token", w => { w.Write((uint)ValueType.Bool); w.Write((byte)0); }));
        return kv;
    }

    /// <summary>GPT-2's reversible byte-to-character map (printable bytes map to themselves, the rest to U+0100 onwards).</summary>
    private static char[] Gpt2ByteAlphabet()
    {
        var map = new char[256];
        var printable = new bool[256];
        for (int b = '!'; b <= '~'; b++) printable[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) printable[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) printable[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++) map[b] = printable[b] ? (char)b : (char)(256 + n++);
        return map;
    }
}
