using KVLink.Core.Model;
using static TorchSharp.torch;

namespace KVLink.Core.Engine;

/// <summary>
/// The keys and values of prompt prefixes (BOS, system turn, user header, memory start), which requests share: the
/// prefix attends only to itself, so its cache is the same for every request with the same system content. A prefix is
/// encoded once, through the scheduler like a document, before the first request that needs it is queued
/// (<see cref="EnsureAsync"/>); requests then place it (<see cref="Place"/>). The <see cref="Capacity"/> most recently
/// used are kept: the format's own prefix, and a few conversations' system contents.
/// </summary>
internal sealed class PromptPrefixes(EngineContext c) : IDisposable
{
    /// <summary>Prefixes kept.</summary>
    public const int Capacity = 16;

    private sealed record Entry(int[] Tokens, Tensor Keys, Tensor Values);

    // Guarded by _gate: placement (model thread) copies an entry while a finished encode (any thread) may evict another.
    private readonly LinkedList<Entry> _kept = new();
    private readonly Lock _gate = new();
    private readonly SharedWork<string, bool> _inflight = new();

    /// <summary>
    /// Makes sure the first <paramref name="length"/> tokens of <paramref name="tokens"/> are kept, encoding them through
    /// the scheduler when they are not; callers asking for the same prefix at once share one encode, which stops only when
    /// all of them have given up.
    /// </summary>
    public async Task EnsureAsync(IReadOnlyList<int> tokens, int length, CancellationToken ct)
    {
        if (length == 0) return;
        int[] prefix = [.. tokens.Take(length)];
        lock (_gate)
            if (Find(prefix) is not null) return;
        await _inflight.RunAsync(string.Join(',', prefix), cancel => EncodeAsync(prefix, cancel), ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Writes the kept prefix of <paramref name="tokens"/> at cache positions 0..length-1 and returns its length; 0 when it is not
    /// kept (evicted since <see cref="EnsureAsync"/>): the request then computes the prefix's rows in its own steps and
    /// <see cref="Keep"/>s them. Model thread.
    /// </summary>
    public int Place(AttentionCache cache, IReadOnlyList<int> tokens, int length)
    {
        if (length == 0) return 0;
        lock (_gate)
        {
            if (Find(tokens.Take(length).ToArray()) is not { } node) return 0;
            _kept.Remove(node);
            _kept.AddFirst(node);
            cache.Write(0, node.Value.Keys, node.Value.Values);
            return length;
        }
    }

    /// <summary>Keeps a prefix a request computed itself (its rows are in <paramref name="cache"/>'s first positions). Model thread.</summary>
    public void Keep(AttentionCache cache, IReadOnlyList<int> tokens, int length)
    {
        using var scope = NewDisposeScope();
        var (keys, values) = cache.Export(0, length);
        Add([.. tokens.Take(length)], keys.DetachFromDisposeScope(), values.DetachFromDisposeScope());
    }

    private async Task<bool> EncodeAsync(int[] prefix, CancellationToken cancel)
    {
        var encode = new EncodeSequence(c.Model, prefix, background: false, cancel);
        c.Worker.Scheduler.Submit(encode);
        var (keys, values) = await encode.Task.ConfigureAwait(false);
        Add(prefix, keys, values);
        return true;
    }

    private void Add(int[] prefix, Tensor keys, Tensor values)
    {
        Entry? evicted = null;
        lock (_gate)
        {
            if (Find(prefix) is not null)
            {
                keys.Dispose();
                values.Dispose();
                return;
            }
            _kept.AddFirst(new Entry(prefix, keys, values));
            if (_kept.Count > Capacity)
            {
                evicted = _kept.Last!.Value;
                _kept.RemoveLast();
            }
        }
        evicted?.Keys.Dispose();
        evicted?.Values.Dispose();
    }

    private LinkedListNode<Entry>? Find(int[] prefix)
    {
        for (var node = _kept.First; node is not null; node = node.Next)
            if (node.Value.Tokens.AsSpan().SequenceEqual(prefix)) return node;
        return null;
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var e in _kept) { e.Keys.Dispose(); e.Values.Dispose(); }
            _kept.Clear();
        }
    }
}
