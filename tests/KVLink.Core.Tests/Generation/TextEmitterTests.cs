using System.Text;
using KVLink.Core.Generation;
using KVLink.Core.Tests.Tokenization;
using KVLink.Core.Tokenization;

namespace KVLink.Core.Tests.Generation;

/// <summary>What a caller sees of generated tokens: clean text, held-back stop sequences, the same streamed or not.</summary>
public sealed class TextEmitterTests : IDisposable
{
    private readonly TempFolder _dir = new();
    private readonly LlamaTokenizer _tok;

    public TextEmitterTests() => _tok = LlamaTokenizer.FromHuggingFaceJson(TinyByteLevelTokenizer.Write(_dir.Path));

    public void Dispose() => _dir.Dispose();

    // The tiny tokenizer's byte tokens have the byte's value as id.
    private static int[] Bytes(string s) => [.. Encoding.UTF8.GetBytes(s).Select(b => (int)b)];

    private (string Text, List<string> Deltas, bool Stopped, int Consumed) Run(GenerationOptions options, IEnumerable<int> tokens)
    {
        var deltas = new List<string>();
        var e = new TextEmitter(_tok, options, deltas.Add);
        int consumed = 0;
        bool stopped = false;
        foreach (int t in tokens)
        {
            consumed++;
            if (e.Push(t)) { stopped = true; break; }
        }
        e.Finish();
        return (e.Text, deltas, stopped, consumed);
    }

    [Fact]
    public void Special_tokens_are_left_out_unless_kept()
    {
        int[] tokens = [.. Bytes("ab"), TinyByteLevelTokenizer.EotId, .. Bytes("c"), TinyByteLevelTokenizer.BeginOfText];
        Assert.Equal("abc", Run(new GenerationOptions(), tokens).Text);
        Assert.Equal("ab<|eot_id|>c<|begin_of_text|>", Run(new GenerationOptions { KeepSpecialTokens = true }, tokens).Text);
    }

    [Fact]
    public void Bytes_that_never_form_utf8_are_dropped_and_split_characters_are_whole()
    {
        // 0xFF is never UTF-8; 0x97 alone is a stray continuation byte; "日" arrives as three byte tokens.
        int[] tokens = [.. Bytes("x"), 0xFF, 0x97, .. Bytes("日"), .. Bytes("y"), 0xE6];
        var (text, deltas, _, _) = Run(new GenerationOptions(), tokens);
        Assert.Equal("x日y", text); // the unfinished 0xE6 at the very end is dropped too
        Assert.DoesNotContain(deltas, d => d.Contains('\uFFFD') || d.Length == 0);
        Assert.Equal(text, string.Concat(deltas));
    }

    [Fact]
    public void A_stop_sequence_across_tokens_stops_decoding_and_is_never_streamed()
    {
        int[] tokens = Bytes("Answer: 42\n\nQuestion: next");
        var (text, deltas, stopped, consumed) = Run(new GenerationOptions { StopSequences = ["\n\nQuestion"] }, tokens);
        Assert.True(stopped);
        Assert.Equal("Answer: 42", text);
        Assert.Equal(text, string.Concat(deltas));
        Assert.Equal(Bytes("Answer: 42\n\nQuestion").Length, consumed); // decoding stops on the token that completes it
        Assert.DoesNotContain(deltas, d => d.Contains('\n'));
    }

    [Fact]
    public void A_special_token_between_the_parts_of_a_stop_sequence_does_not_hide_it()
    {
        int[] tokens = [.. Bytes("ok EN"), TinyByteLevelTokenizer.EotId, .. Bytes("D more")];
        Assert.Equal("ok ", Run(new GenerationOptions { StopSequences = ["END"] }, tokens).Text);
    }
}
