using KVLink.TestSupport;
using KVLink.Core.Compression;
using KVLink.Core.Diagnostics;
using KVLink.Core.Engine;
using KVLink.Core.Generation;
using KVLink.Core.Model;
using KVLink.Core.Prompting;
using KVLink.Core.Tests.Scheduling;

namespace KVLink.Core.Tests.Compression;

/// <summary>
/// Compression scored by the engine's own model runs through the scheduler (one <see cref="ScoreSequence"/> per window, whose
/// chunks ask for every row's logits) and gives what the direct cache-free <see cref="SelfInformation"/> gives.
/// </summary>
public sealed class ScheduledScoringTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>, IDisposable
{
    private static readonly KvLinkDocument Long = CheckpointFixture.Doc(910, words: 60);

    // The same weights loaded a second time: a scorer model that is not the engine's model object.
    private readonly Lazy<LlamaForCausalLM> _separate = new(fx.LoadModel);

    private KvLinkEngine Engine(string name, double keep, int window, int context, int stepTokens = 512, bool separateScorer = false) =>
        new(fx.Model, fx.Tokenizer, new KvLinkOptions
        {
            LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.Float32, MaxStepTokens = stepTokens,
            Compression = new DocumentCompressionOptions
            {
                KeepFraction = keep, Window = window, Context = context,
                ScorerModel = separateScorer ? _separate.Value : null,
            },
        }, null, new KvLinkDiagnostics { Name = name });

    [Theory]
    [InlineData(16, 8, 512)]
    [InlineData(16, 8, 5)]     // windows split into chunks of 5 rows: context-only chunks, then chunks with a few output rows
    [InlineData(7, 4096, 3)]   // every window sees the whole document before it
    [InlineData(5, 0, 512)]    // no context: each window starts at the token that predicts its first
    [InlineData(512, 256, 4)]  // one window over the whole document
    public async Task Scheduled_scores_equal_the_direct_scorer(int window, int context, int stepTokens)
    {
        await using var engine = Engine("score-" + Guid.NewGuid().ToString("N"), 0.5, window, context, stepTokens);
        var tokens = fx.Format.Document(fx.Tokenizer, Long, 0);
        Assert.True(tokens.Count > 2 * window || window == 512, $"{tokens.Count} tokens");

        var direct = new SelfInformation(fx.Model, window, context).Score(tokens);
        // A greedy request decodes while the document is scored: its rows share the scoring steps (decode rows first).
        string id = await engine.PrecomputeAsync(CheckpointFixture.Doc(911, 8) with { KeepFraction = 1 });
        var request = engine.GenerateAsync("Which word comes first?", [id], new KvLinkGenerationOptions { MaxNewTokens = 12, StopTokenIds = [] });
        var scheduled = await new DocumentCompression(engine.Context).ScoreAsync(tokens, background: false, CancellationToken.None);
        await request;

        Assert.Equal(tokens.Count, scheduled.Length);
        Assert.True(double.IsPositiveInfinity(scheduled[0]));
        for (int i = 1; i < tokens.Count; i++)
            Assert.True(Math.Abs(direct[i] - scheduled[i]) < 1e-4, $"token {i}: direct {direct[i]}, scheduled {scheduled[i]}");
    }

    [Theory]
    [InlineData(0.3, 512)]
    [InlineData(0.6, 4)]
    public async Task A_compressed_precompute_scores_through_the_scheduler_and_keeps_the_tokens_the_direct_scorer_keeps(double keep, int stepTokens)
    {
        const int window = 16, context = 8;
        string name = "kept-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Engine(name, keep, window, context, stepTokens);
        int prefixRows = steps.Tokens.Sum(); // the engine encoded the shared prompt prefix before it returned
        string id = await engine.PrecomputeAsync(Long);
        using var entry = await engine.Store.GetAsync(engine.CacheKey(id, 0));

        var full = fx.Format.Document(fx.Tokenizer, Long, 0);
        int header = fx.Format.DocumentHeaderLength(fx.Tokenizer, Long, 0);
        var expected = new DocumentCompressor(new SelfInformation(fx.Model, window, context)).Compress(full, keep, header, Structural(full));
        Assert.True(expected.Length < full.Count);
        Assert.Equal(expected, entry!.TokenIds);

        // Every row the model ran was a scheduler step's: the scoring windows' rows (context and all but each window's
        // last token) and then the kept tokens' encode. A direct scorer would leave only the encode's rows.
        int scoringRows = SelfInformation.Windows(full.Count, window, context).Sum(w => w.End - 1 - w.From);
        Assert.Equal(prefixRows + scoringRows + entry.Length, steps.Tokens.Sum());
        Assert.True(steps.Tokens.Max() <= stepTokens);
    }

    [Fact]
    public async Task A_separate_scorer_model_keeps_its_direct_forward_and_selects_the_same_tokens()
    {
        const int window = 16, context = 8;
        string name = "separate-" + Guid.NewGuid().ToString("N");
        using var steps = new StepRecorder(name);
        await using var engine = Engine(name, 0.5, window, context, separateScorer: true);
        int prefixRows = steps.Tokens.Sum();
        string id = await engine.PrecomputeAsync(Long);
        using var entry = await engine.Store.GetAsync(engine.CacheKey(id, 0));

        var full = fx.Format.Document(fx.Tokenizer, Long, 0);
        int header = fx.Format.DocumentHeaderLength(fx.Tokenizer, Long, 0);
        Assert.Equal(new DocumentCompressor(new SelfInformation(fx.Model, window, context)).Compress(full, 0.5, header, Structural(full)), entry!.TokenIds);
        Assert.Equal(prefixRows + entry.Length, steps.Tokens.Sum()); // the scheduler ran the prefix and the encode alone
    }

    /// <summary>What the engine keeps whatever the scores: the last token and any that contains a line break.</summary>
    private int[] Structural(IReadOnlyList<int> tokens) =>
        [.. Enumerable.Range(0, tokens.Count).Where(i => i == tokens.Count - 1 || fx.Tokenizer.Decode([tokens[i]]).Contains('\n', StringComparison.Ordinal))];

    public void Dispose()
    {
        if (_separate.IsValueCreated) _separate.Value.Dispose();
    }
}
