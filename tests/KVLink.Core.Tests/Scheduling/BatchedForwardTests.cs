using KVLink.TestSupport;
using KVLink.Core.Linking;
using KVLink.Core.Model;
using static TorchSharp.torch;
using static KVLink.Core.Tests.Scheduling.CacheAssert;

namespace KVLink.Core.Tests.Scheduling;

/// <summary>
/// The batched forward of the scheduler: several sequences' rows concatenated, projections and MLP over all rows at once,
/// attention per sequence over its own cache. Its logits, caches and document encodings equal the unbatched ones (f32).
/// </summary>
public sealed class BatchedForwardTests(CheckpointFixture fx) : IClassFixture<CheckpointFixture>
{
    private static long[] Range(int from, int count) => [.. Enumerable.Range(from, count).Select(i => (long)i)];

    private static int[] Tokens(int seed, int count) => [.. Enumerable.Range(0, count).Select(i => 3 + (seed * 37 + i * 11) % 200)];

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // the last layer computes only the rows whose output is wanted (sequence 1's chunk wants none)
    public void A_batched_step_of_prefills_and_decodes_gives_each_sequence_its_unbatched_logits_and_cache(bool lastOnly)
    {
        var model = fx.Model;
        using var scope = NewDisposeScope();
        // Three sequences with histories of different lengths: each first gets a prompt alone, into two identical caches.
        int[] history = [5, 17, 2];
        var alone = history.Select(h => new AttentionCache(model.Config, 64, ScalarType.Float32)).ToArray();
        var batched = history.Select(h => new AttentionCache(model.Config, 64, ScalarType.Float32)).ToArray();
        for (int s = 0; s < history.Length; s++)
            foreach (var cache in new[] { alone[s], batched[s] })
            {
                var pos = Range(0, history[s]);
                model.Hidden(tensor(Tokens(s, history[s]).Select(t => (long)t).ToArray(), [1, history[s]]),
                    model.Step(pos, AttentionMasks.CausalOverCache(pos, history[s]), cache));
            }

        // This step: sequence 0 decodes one token, sequence 1 prefills a chunk of 6, sequence 2 a chunk of 3.
        int[] rows = [1, 6, 3];
        var expected = new List<Tensor>();
        for (int s = 0; s < rows.Length; s++)
        {
            var pos = Range(history[s], rows[s]);
            expected.Add(model.Forward(tensor(Tokens(10 + s, rows[s]).Select(t => (long)t).ToArray(), [1, rows[s]]),
                model.Step(pos, AttentionMasks.CausalOverCache(pos, history[s] + rows[s]), alone[s]))[0]);
        }

        var positions = new List<long>();
        var ids = new List<long>();
        var parts = new List<SequenceRows>();
        for (int s = 0; s < rows.Length; s++)
        {
            var pos = Range(history[s], rows[s]);
            parts.Add(new SequenceRows(positions.Count, rows[s], tensor(pos), pos[^1], AttentionMasks.CausalOverCache(pos, history[s] + rows[s]), batched[s], Output: s != 1));
            positions.AddRange(pos);
            ids.AddRange(Tokens(10 + s, rows[s]).Select(t => (long)t));
        }
        var logits = model.Forward(tensor(ids.ToArray(), [1, ids.Count]), model.BatchStep([.. positions], parts), lastOnly)[0];
        if (lastOnly) Assert.Equal(2, logits.shape[0]); // one row each for sequences 0 and 2

        for (int s = 0; s < rows.Length; s++)
        {
            if (lastOnly && s == 1) continue;
            var (mine, theirs) = !lastOnly ? (logits.narrow(0, parts[s].Start, rows[s]), expected[s])
                : (logits.narrow(0, s == 0 ? 0 : 1, 1), expected[s].narrow(0, rows[s] - 1, 1));
            Assert.True(RelativeError(mine, theirs) < 1e-5, $"sequence {s}: logits differ by {RelativeError(mine, theirs):E2}");
            Assert.True(RelativeError(mine, expected[(s + 1) % rows.Length].narrow(0, 0, 1).expand(mine.shape[0], -1)) > 1e-3, "sequences must differ, else the test proves nothing");
            CacheAssert.Equal(alone[s], batched[s], $"sequence {s}");
        }
        foreach (var c in alone.Concat(batched)) c.Dispose();
    }

    [Fact]
    public void Documents_encoded_in_one_forward_equal_each_document_encoded_alone()
    {
        var model = fx.Model;
        using var scope = NewDisposeScope();
        int[] lengths = [9, 23, 1, 14];
        var docs = lengths.Select((n, i) => Tokens(50 + i, n)).ToArray();
        var caches = lengths.Select(n => new AttentionCache(model.Config, n, ScalarType.Float32)).ToArray();

        // Every document at its own positions 0..L-1, its rows attending only to its own (block-diagonal attention).
        var positions = new List<long>();
        var ids = new List<long>();
        var parts = new List<SequenceRows>();
        for (int d = 0; d < docs.Length; d++)
        {
            var pos = Range(0, lengths[d]);
            parts.Add(new SequenceRows(positions.Count, lengths[d], tensor(pos), pos[^1], AttentionMasks.CausalOverCache(pos, lengths[d]), caches[d], Output: false));
            positions.AddRange(pos);
            ids.AddRange(docs[d].Select(t => (long)t));
        }
        // Only the caches are wanted: the last layer computes no query rows at all.
        var hidden = model.Hidden(tensor(ids.ToArray(), [1, ids.Count]), model.BatchStep([.. positions], parts), lastOnly: true);
        Assert.Equal(0, hidden.shape[1]);

        for (int d = 0; d < docs.Length; d++)
        {
            var (keys, values) = DocumentEncoder.Encode(model, docs[d]);
            var (k, v) = caches[d].Export(0, lengths[d]);
            Assert.True(RelativeError(k, keys) < 1e-5, $"document {d}: keys differ by {RelativeError(k, keys):E2}");
            Assert.True(RelativeError(v, values) < 1e-5, $"document {d}: values differ by {RelativeError(v, values):E2}");
        }
        foreach (var c in caches) c.Dispose();
    }
}
