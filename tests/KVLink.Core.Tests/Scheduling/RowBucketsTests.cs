using KVLink.TestSupport;
using KVLink.Core.Compression;
using KVLink.Core.Engine;
using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>
/// A small bf16 model's steps run with their rows padded to a few counts (<see cref="RowBuckets"/>), so oneDNN reuses its
/// primitives; the padding rows belong to no sequence: every sequence gets what it gets without them.
/// </summary>
public sealed class RowBucketsTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>, IDisposable
{
    private readonly Lazy<LlamaForCausalLM> _bf16 = new(() => LlamaCheckpoint.Load(fx.Folder, ScalarType.BFloat16));

    [Theory]
    [InlineData(1, 1)]
    [InlineData(16, 16)]   // decoding steps keep their count
    [InlineData(17, 24)]   // 8 counts per doubling: multiples of 8 up to 127
    [InlineData(50, 56)]
    [InlineData(57, 64)]
    [InlineData(64, 64)]
    [InlineData(65, 72)]
    [InlineData(129, 144)] // multiples of 16 from 128
    [InlineData(230, 240)]
    [InlineData(460, 480)] // multiples of 32 from 256
    [InlineData(4097, 4608)]
    public void Rows_round_up_to_eight_counts_per_doubling(int rows, int padded) => Assert.Equal(padded, RowBuckets.Padded(rows));

    [Fact]
    public void Padding_is_at_most_seven_rows_or_an_eighth()
    {
        for (int rows = 1; rows <= 20_000; rows++)
        {
            int padded = RowBuckets.Padded(rows);
            Assert.True(padded >= rows && (padded - rows <= 7 || padded - rows <= rows / 8.0), $"{rows} -> {padded}");
        }
    }

    [Fact]
    public void Only_a_small_model_computing_in_reduced_precision_on_the_CPU_pads()
    {
        Assert.True(RowBuckets.Applies(_bf16.Value));
        Assert.False(RowBuckets.Applies(fx.Model)); // float32 products go to MKL, which creates no primitives
    }

    [Fact]
    public async Task Documents_encoded_in_one_padded_step_equal_each_document_encoded_alone()
    {
        var model = _bf16.Value;
        var scheduler = new BatchScheduler(model, new KvLinkOptions { DType = ComputeDType.BFloat16, GroupSteps = false }, null, () => { });
        int[][] documents = [Tokens(1, 12), Tokens(2, 14), Tokens(3, 11), Tokens(4, 13)];
        Assert.Equal(56, RowBuckets.Padded(documents.Sum(d => d.Length))); // 50 rows run as 56
        var encodes = documents.Select(d => new EncodeSequence(model, d, background: false)).ToArray();
        foreach (var e in encodes) scheduler.Submit(e);
        scheduler.Step();

        for (int i = 0; i < documents.Length; i++)
        {
            var (keys, values) = await encodes[i].Task;
            var (expectedKeys, expectedValues) = DocumentEncoder.Encode(model, documents[i]); // 11-14 rows: not padded
            // bf16 products of other row counts round differently (about 1e-2); a padding row written into a cache or
            // attended to would change a document's keys or values by their whole size.
            double error = Math.Max(Error(keys, expectedKeys), Error(values, expectedValues));
            Assert.True(error < 3e-2, $"document {i} differs from the document encoded alone by {error:E2}");
            foreach (var t in new[] { keys, values, expectedKeys, expectedValues }) t.Dispose();
        }
    }

    [Fact]
    public async Task A_padded_step_whose_every_row_is_an_output_returns_only_its_rows_logits()
    {
        // Scoring windows of 21 tokens with no context: chunks of 20 output rows, run as 24.
        const int window = 21;
        Assert.Equal(24, RowBuckets.Padded(window - 1));
        await using var engine = new KvLinkEngine(_bf16.Value, fx.Tokenizer, new KvLinkOptions
        {
            LinkTokens = 1, PromptFormat = fx.Format, DType = ComputeDType.BFloat16,
            Compression = new DocumentCompressionOptions { KeepFraction = 0.5, Window = window, Context = 0 },
        });
        var tokens = fx.Format.Document(fx.Tokenizer, CheckpointFixture.Doc(920, words: 40), 0);
        var direct = new SelfInformation(_bf16.Value, window, 0).Score(tokens);
        var scheduled = await new DocumentCompression(engine.Context).ScoreAsync(tokens, background: false, CancellationToken.None);

        Assert.Equal(tokens.Count, scheduled.Length);
        for (int i = 1; i < tokens.Count; i++)
            Assert.True(Math.Abs(direct[i] - scheduled[i]) < 0.1 + 0.02 * Math.Abs(direct[i]), $"token {i}: direct {direct[i]}, scheduled {scheduled[i]}");
    }

    private static int[] Tokens(int seed, int count) => [.. Enumerable.Range(0, count).Select(i => 3 + (seed * 37 + i * 11) % 200)];

    private static double Error(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var (fa, fb) = (a.to_type(ScalarType.Float32), b.to_type(ScalarType.Float32));
        return (fa - fb).abs().max().item<float>() / fb.abs().max().item<float>();
    }

    public void Dispose()
    {
        if (_bf16.IsValueCreated) _bf16.Value.Dispose();
    }
}
