using KVLink.Core.Tokenization;

namespace KVLink.Core.Generation;

/// <summary>
/// Turns generated token ids into the text a caller sees, one token at a time, the same way whether it streams
/// or not: special tokens (link tokens, reserved tokens, headers) are dropped unless kept on request; bytes of an
/// unfinished UTF-8 character are held until the token that completes them, and bytes that can never form valid
/// UTF-8 are dropped, so no U+FFFD appears that the model did not spell out; stop sequences are matched on the text
/// (<see cref="StopSequenceMatcher"/>). The per-token decode path calls <see cref="Push"/> and stops when it returns true.
/// </summary>
internal sealed class TextEmitter
{
    private readonly LlamaTokenizer _tokenizer;
    private readonly HashSet<int> _special;
    private readonly Utf8StreamDecoder _decoder;
    private readonly StopSequenceMatcher? _stops;
    private readonly Action<string>? _onDelta;
    private readonly System.Text.StringBuilder _text = new();

    /// <summary>Creates an emitter that reports each non-empty delta to <paramref name="onDelta"/>.</summary>
    public TextEmitter(LlamaTokenizer tokenizer, GenerationOptions options, Action<string>? onDelta = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        _tokenizer = tokenizer;
        _special = options.KeepSpecialTokens ? [] : [.. tokenizer.SpecialTokens.Values];
        _decoder = new Utf8StreamDecoder(tokenizer, dropInvalid: true);
        _stops = options.StopSequences is { Count: > 0 } s ? new StopSequenceMatcher(s) : null;
        _onDelta = onDelta;
    }

    /// <summary>All text emitted so far.</summary>
    public string Text => _text.ToString();

    /// <summary>True once a stop sequence was matched.</summary>
    public bool Stopped => _stops?.Stopped == true;

    /// <summary>Adds a generated token; returns true when a stop sequence has ended the text (decoding should stop).</summary>
    public bool Push(int token)
    {
        if (Stopped) return true;
        if (_special.Contains(token)) return false;
        Emit(_decoder.Push(token));
        return Stopped;
    }

    /// <summary>Ends the stream: releases held-back text (an unfinished character at the very end is dropped).</summary>
    public void Finish()
    {
        if (Stopped) return;
        Emit(_decoder.Flush());
        if (_stops is not null) Deliver(_stops.Flush());
    }

    private void Emit(string decoded)
    {
        if (decoded.Length == 0) return;
        Deliver(_stops is null ? decoded : _stops.Push(decoded));
    }

    private void Deliver(string delta)
    {
        if (delta.Length == 0) return;
        _text.Append(delta);
        _onDelta?.Invoke(delta);
    }

    /// <summary>The tokenizer (for callers that also decode token text, like logprobs).</summary>
    public LlamaTokenizer Tokenizer => _tokenizer;
}
