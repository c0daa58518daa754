using System.Text.Json;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Model;

/// <summary>Our parameter names and shapes are Hugging Face's, for the real Llama configs (built on the meta device).</summary>
public class HuggingFaceShapesTests
{
    // The published config.json files (fields that matter), verbatim values.
    private const string Llama32_1B = """
        {"architectures":["LlamaForCausalLM"],"attention_bias":false,"attention_dropout":0.0,"bos_token_id":128000,
         "eos_token_id":[128001,128008,128009],"head_dim":64,"hidden_act":"silu","hidden_size":2048,"initializer_range":0.02,
         "intermediate_size":8192,"max_position_embeddings":131072,"mlp_bias":false,"model_type":"llama","num_attention_heads":32,
         "num_hidden_layers":16,"num_key_value_heads":8,"pretraining_tp":1,"rms_norm_eps":1e-05,
         "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
         "rope_theta":500000.0,"tie_word_embeddings":true,"torch_dtype":"bfloat16","use_cache":true,"vocab_size":128256}
        """;
    private const string Llama32_3B = """
        {"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":128000,"eos_token_id":[128001,128008,128009],
         "head_dim":128,"hidden_act":"silu","hidden_size":3072,"intermediate_size":8192,"max_position_embeddings":131072,"mlp_bias":false,
         "model_type":"llama","num_attention_heads":24,"num_hidden_layers":28,"num_key_value_heads":8,"rms_norm_eps":1e-05,
         "rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
         "rope_theta":500000.0,"tie_word_embeddings":true,"torch_dtype":"bfloat16","vocab_size":128256}
        """;
    private const string Llama31_8B = """
        {"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":128000,"eos_token_id":[128001,128008,128009],
         "hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,"max_position_embeddings":131072,"mlp_bias":false,
         "model_type":"llama","num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":8,"rms_norm_eps":1e-05,
         "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},
         "rope_theta":500000.0,"tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":128256}
        """;

    /// <summary>(json, layers, hidden, intermediate, q rows, kv rows, parameter count of HF's model.num_parameters()).</summary>
    public static TheoryData<string, int, int, int, int, int, long> Models => new()
    {
        { Llama32_1B, 16, 2048, 8192, 2048, 512, 1_235_814_400 },
        { Llama32_3B, 28, 3072, 8192, 3072, 1024, 3_212_749_824 },
        { Llama31_8B, 32, 4096, 14336, 4096, 1024, 8_030_261_248 },
    };

    [Theory]
    [MemberData(nameof(Models))]
    public void State_dict_names_and_shapes_match_hugging_face(string json, int layers, int hidden, int inter, int qRows, int kvRows, long hfParameterCount)
    {
        using var doc = JsonDocument.Parse(json);
        var config = LlamaConfig.FromJson(doc.RootElement);
        using var model = new LlamaForCausalLM(config, ScalarType.BFloat16, META);
        var actual = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);

        // The names Hugging Face's LlamaForCausalLM.state_dict() produces, written out independently.
        var expected = new Dictionary<string, long[]>
        {
            ["model.embed_tokens.weight"] = [128256, hidden],
            ["model.norm.weight"] = [hidden],
            ["lm_head.weight"] = [128256, hidden],
        };
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}.";
            expected[p + "self_attn.q_proj.weight"] = [qRows, hidden];
            expected[p + "self_attn.k_proj.weight"] = [kvRows, hidden];
            expected[p + "self_attn.v_proj.weight"] = [kvRows, hidden];
            expected[p + "self_attn.o_proj.weight"] = [hidden, qRows];
            expected[p + "mlp.gate_proj.weight"] = [inter, hidden];
            expected[p + "mlp.up_proj.weight"] = [inter, hidden];
            expected[p + "mlp.down_proj.weight"] = [hidden, inter];
            expected[p + "input_layernorm.weight"] = [hidden];
            expected[p + "post_attention_layernorm.weight"] = [hidden];
        }
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, shape) in expected) Assert.True(shape.SequenceEqual(actual[name]), name);

        // HF's num_parameters() counts a tied matrix once.
        long count = model.named_parameters().Where(p => !(config.TieWordEmbeddings && p.name == "lm_head.weight")).Sum(p => p.parameter.numel());
        Assert.Equal(hfParameterCount, count);
        Assert.All(model.parameters(), p => Assert.Equal(TorchSharp.DeviceType.META, p.device_type));
    }
}
