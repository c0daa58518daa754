using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// A preallocated key/value cache written in place at position indices (no per-token concatenation).
/// Keys and values of all layers live in one [layers, batch, kv_heads, capacity, head_dim] tensor each,
/// so stored document caches are copied in with one copy per document and re-rotated in one pass.
/// Its index is the global position: the key at index p is rotated for position p.
/// </summary>
internal sealed class AttentionCache : IDisposable
{
    private readonly Tensor _keys, _values;
    // With a pool: the whole buffers (perhaps longer than Capacity; _keys/_values are their first Capacity positions),
    // handed back on Dispose.
    private readonly Tensor? _bufferKeys, _bufferValues;
    private readonly AttentionCachePool? _pool;

    /// <summary>Allocates a cache for <paramref name="capacity"/> positions, all zero.</summary>
    public AttentionCache(LlamaConfig config, int capacity, ScalarType dtype, Device? device = null, int batch = 1)
        : this(config, capacity, dtype, device, batch, pool: null) { }

    /// <summary>
    /// A cache for <paramref name="capacity"/> positions of <paramref name="model"/>, all zero, on a buffer from the
    /// model's <see cref="LlamaForCausalLM.CachePool"/> when one fits (given back there on <see cref="Dispose"/>).
    /// </summary>
    public static AttentionCache Rent(LlamaForCausalLM model, int capacity) =>
        new(model.Config, capacity, model.DType, model.Device, batch: 1, model.CachePool);

    private AttentionCache(LlamaConfig config, int capacity, ScalarType dtype, Device? device, int batch, AttentionCachePool? pool)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "Capacity must be positive.");
        Capacity = capacity;
        Layers = config.NumHiddenLayers;
        long[] shape = [config.NumHiddenLayers, batch, config.NumKeyValueHeads, capacity, config.HeadDim];
        // The cache owns its tensors until Dispose: none belongs to the caller's dispose scope (a sequence starts inside
        // one), and none is an unnamed temporary. A temporary's handle is all a native call holds, so a garbage collection
        // started by another thread during the call could let the finalizer free the tensor under it: the cleared view of a
        // pooled buffer used to be such a temporary (`narrow(...).zero_()`), and under load the clear then read freed
        // memory (segmentation faults in Start, garbage dispatch keys in placement).
        if (pool?.Take(shape, dtype, device ?? CPU) is { } reused)
        {
            (_bufferKeys, _bufferValues, _pool) = (reused.Keys, reused.Values, pool);
            // A view of the first Capacity positions, cleared: a cache reads as zeros where nothing was written yet.
            _keys = reused.Keys.narrow(3, 0, capacity).DetachFromDisposeScope();
            _values = reused.Values.narrow(3, 0, capacity).DetachFromDisposeScope();
            Clear(_keys);
            Clear(_values);
            return;
        }
        _keys = zeros(shape, dtype, device).DetachFromDisposeScope();
        _values = zeros(shape, dtype, device).DetachFromDisposeScope();
        if (pool is not null) (_bufferKeys, _bufferValues, _pool) = (_keys.alias().DetachFromDisposeScope(), _values.alias().DetachFromDisposeScope(), pool);
    }

    /// <summary>Zeroes <paramref name="t"/> in place (TorchSharp's <c>zero_</c> returns another handle, released here), keeping <paramref name="t"/> alive across the call.</summary>
    private static void Clear(Tensor t)
    {
        t.zero_().Dispose();
        GC.KeepAlive(t);
    }

    /// <summary>Number of positions.</summary>
    public int Capacity { get; }

    /// <summary>One past the highest position filled so far; attention reads positions [0, Length).</summary>
    public int Length { get; private set; }

    /// <summary>Number of layers.</summary>
    public int Layers { get; }

    /// <summary>Writes new keys/values ([B, kv_heads, T, d]) of one layer at <paramref name="positions"/> and returns views over positions [0, max(Length, maxPosition+1)).</summary>
    public (Tensor Keys, Tensor Values) Update(int layer, Tensor positions, long maxPosition, Tensor k, Tensor v)
    {
        if (maxPosition >= Capacity) throw new InvalidOperationException($"KV cache position {maxPosition} is beyond its capacity {Capacity}.");
        using (var kl = _keys[layer]) kl.index_copy_(2, positions, k);
        using (var vl = _values[layer]) vl.index_copy_(2, positions, v);
        return View(layer, (int)Math.Max(Length, maxPosition + 1));
    }

    /// <summary>
    /// Copies a run of keys/values for every layer ([layers, kv_heads, L, d]) into positions [start, start+L)
    /// of batch row 0, as stored (no rotation).
    /// </summary>
    public void Write(int start, Tensor keys, Tensor values)
    {
        long len = keys.shape[2];
        if (start < 0 || start + len > Capacity) throw new InvalidOperationException($"Positions [{start}, {start + len}) do not fit a KV cache of capacity {Capacity}.");
        using var scope = NewDisposeScope();
        _keys.select(1, 0).narrow(2, start, len).copy_(keys);
        _values.select(1, 0).narrow(2, start, len).copy_(values);
    }

    /// <summary>Applies <paramref name="transform"/> to the keys of positions [start, start+length) of all layers, in place.</summary>
    public void TransformKeys(int start, int length, Func<Tensor, Tensor> transform)
    {
        using var scope = NewDisposeScope();
        var region = _keys.narrow(3, start, length);
        region.copy_(transform(region));
    }

    /// <summary>
    /// Re-rotates, in place, the keys of positions [start, start+offsets.Length) of all layers by one offset per position
    /// (see <see cref="RopeRerotation.ShiftInPlace"/>).
    /// </summary>
    public void RotateKeys(int start, IReadOnlyList<long> offsets, RotaryEmbedding rope)
    {
        if (start < 0 || start + offsets.Count > Capacity) throw new InvalidOperationException($"Positions [{start}, {start + offsets.Count}) do not fit a KV cache of capacity {Capacity}.");
        using var scope = NewDisposeScope();
        RopeRerotation.ShiftInPlace(_keys.narrow(3, start, offsets.Count), offsets, rope);
    }

    /// <summary>Marks positions [0, length) as filled.</summary>
    public void Advance(int length) => Length = Math.Max(Length, Math.Min(length, Capacity));

    /// <summary>Views over positions [0, length) of one layer, [B, kv_heads, length, d].</summary>
    public (Tensor Keys, Tensor Values) View(int layer, int length)
    {
        using var kl = _keys[layer];
        using var vl = _values[layer];
        return (kl.narrow(2, 0, length), vl.narrow(2, 0, length));
    }

    /// <summary>Copies of positions [start, start+length) of batch row 0 for all layers, each [layers, kv_heads, length, d].</summary>
    public (Tensor Keys, Tensor Values) Export(int start, int length)
    {
        using var scope = NewDisposeScope();
        var k = _keys.select(1, 0).narrow(2, start, length).clone();
        var v = _values.select(1, 0).narrow(2, start, length).clone();
        return (k.MoveToOuterDisposeScope(), v.MoveToOuterDisposeScope());
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return; // a buffer goes back to the pool once
        _disposed = true;
        _keys.Dispose();
        _values.Dispose();
        if (_pool is not null) _pool.Return(_bufferKeys!, _bufferValues!);
    }

    private bool _disposed;
}
