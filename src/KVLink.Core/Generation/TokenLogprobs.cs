using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.Core.Generation;

/// <summary>
/// Collects <see cref="TokenLogprob"/>s while decoding: for each step, log_softmax of the logits the token was chosen
/// from (fp32), the chosen token's value and the top-k alternatives. The per-token decode path calls <see cref="Add"/>
/// with the step's logits before they are disposed.
/// </summary>
internal sealed class TokenLogprobs(LlamaTokenizer tokenizer, int topK)
{
    private readonly List<TokenLogprob> _items = [];

    /// <summary>The collected entries, one per generated token.</summary>
    public IReadOnlyList<TokenLogprob> Items => _items;

    /// <summary>Records the chosen <paramref name="token"/> of a step whose logits are <paramref name="logits"/> (any shape ending in vocab).</summary>
    public void Add(Tensor logits, int token)
    {
        using var scope = NewDisposeScope();
        var logp = nn.functional.log_softmax(logits.reshape(-1).to(ScalarType.Float32), 0);
        float chosen = logp[token].item<float>();
        var top = new List<TokenLogprob>();
        if (topK > 0)
        {
            var (values, indices) = logp.topk(Math.Min(topK, (int)logp.shape[0]));
            float[] v = values.data<float>().ToArray();
            long[] ids = indices.data<long>().ToArray();
            for (int i = 0; i < ids.Length; i++) top.Add(new TokenLogprob((int)ids[i], Text((int)ids[i]), v[i], []) { Bytes = Bytes((int)ids[i]) });
        }
        _items.Add(new TokenLogprob(token, Text(token), chosen, top) { Bytes = Bytes(token) });
    }

    private byte[] Bytes(int id) => tokenizer.HasToken(id) ? tokenizer.TokenBytes(id).ToArray() : [];

    private string Text(int id) => tokenizer.HasToken(id) ? System.Text.Encoding.UTF8.GetString(tokenizer.TokenBytes(id)) : "";
}
