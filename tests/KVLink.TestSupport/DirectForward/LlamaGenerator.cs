using System.Diagnostics;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Tokenization;
using static TorchSharp.torch;

namespace KVLink.TestSupport;

/// <summary>
/// Standard generation: the whole prompt prefilled with full causal attention, then token-by-token
/// decoding over a preallocated cache. Synchronous; call it from one thread at a time.
/// </summary>
internal sealed class LlamaGenerator(LlamaForCausalLM model, LlamaTokenizer tokenizer)
{
    /// <summary>The model.</summary>
    public LlamaForCausalLM Model { get; } = model;

    /// <summary>The tokenizer.</summary>
    public LlamaTokenizer Tokenizer { get; } = tokenizer;

    /// <summary>Stop ids used when the options name none: the config's eos ids and <c>&lt;|eot_id|&gt;</c> when the tokenizer has it.</summary>
    public IReadOnlySet<int> DefaultStopTokens()
    {
        var stops = new HashSet<int>(Model.Config.EosTokenIds);
        if (Tokenizer.TokenToId(Llama3ChatFormat.EotToken) is { } eot) stops.Add(eot);
        return stops;
    }

    /// <summary>Generates a continuation of <paramref name="prompt"/> (token ids, BOS included if wanted).</summary>
    public GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var run = Start(prompt, options);
        var (tokens, ttft) = run.Loop.Collect(Model, run.Cache, run.Logits, prompt.Count, run.Clock, null, cancellationToken);
        return run.Result(tokens, ttft);
    }

    /// <summary>Generates and yields text deltas that never split a UTF-8 character; the last update carries the result.</summary>
    public IEnumerable<GenerationUpdate> Stream(IReadOnlyList<int> prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var run = Start(prompt, options);
        var decoder = new Utf8StreamDecoder(Tokenizer);
        var tokens = new List<int>();
        TimeSpan? ttft = null;
        foreach (int token in run.Loop.Run(Model, run.Cache, run.Logits, prompt.Count, cancellationToken))
        {
            ttft ??= run.Clock.Elapsed;
            tokens.Add(token);
            string delta = decoder.Push(token);
            if (delta.Length > 0) yield return new GenerationUpdate(delta);
        }
        string rest = decoder.Flush();
        if (rest.Length > 0) yield return new GenerationUpdate(rest);
        yield return new GenerationUpdate("", run.Result(tokens, ttft ?? run.Clock.Elapsed));
    }

    /// <summary>Validates, allocates the cache and prefills: everything before the first decode step.</summary>
    private GenerationRun Start(IReadOnlyList<int> prompt, GenerationOptions? options)
    {
        var opts = options ?? new GenerationOptions();
        opts.Validate();
        ValidatePrompt(prompt);
        var clock = Stopwatch.StartNew();
        int capacity = (int)Math.Min((long)prompt.Count + opts.MaxNewTokens, Model.Config.MaxPositionEmbeddings); // long: MaxNewTokens may be int.MaxValue
        var cache = new AttentionCache(Model.Config, capacity, Model.DType, Model.Device);
        using var _ = no_grad();
        var logits = CausalPrefill.Run(Model, cache, prompt);
        var loop = new DecodeLoop(Model, cache, opts, opts.StopTokenIds?.ToHashSet() ?? DefaultStopTokens());
        return new GenerationRun(this, prompt.Count, cache, logits, loop, clock, clock.Elapsed);
    }

    private sealed record GenerationRun(LlamaGenerator Owner, int PromptTokens, AttentionCache Cache, Tensor Logits, DecodeLoop Loop, Stopwatch Clock, TimeSpan Prefill) : IDisposable
    {
        public GenerationResult Result(List<int> tokens, TimeSpan ttft) =>
            new(Owner.Tokenizer.Decode(tokens), tokens, Loop.Finish ?? FinishReason.Length,
                new GenerationUsage(PromptTokens, 0, PromptTokens, tokens.Count),
                new GenerationTimings(TimeSpan.Zero, TimeSpan.Zero, Prefill, ttft, Clock.Elapsed));

        public void Dispose()
        {
            Cache.Dispose();
        }
    }

    private void ValidatePrompt(IReadOnlyList<int> prompt)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0) throw new ArgumentException("The prompt is empty.", nameof(prompt));
        if (prompt.Count >= Model.Config.MaxPositionEmbeddings)
            throw new ArgumentException($"The prompt has {prompt.Count} tokens; the model allows {Model.Config.MaxPositionEmbeddings} positions.", nameof(prompt));
        foreach (int id in prompt)
            if ((uint)id >= (uint)Model.Config.VocabSize) throw new ArgumentOutOfRangeException(nameof(prompt), id, $"Token id {id} is outside the vocabulary (size {Model.Config.VocabSize}).");
    }
}
