using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// A preallocated key/value cache, one [batch, kv_heads, capacity, head_dim] buffer per layer for keys
/// and for values, written in place at slot indices (no per-token concatenation). A slot is a global
/// position: the key stored at slot p was rotated for position p.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys, _values;

    /// <summary>Allocates a cache for <paramref name="capacity"/> positions.</summary>
    public KvCache(LlamaConfig config, int capacity, ScalarType dtype, Device? device = null, int batch = 1)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "Capacity must be positive.");
        Capacity = capacity;
        _keys = new Tensor[config.NumHiddenLayers];
        _values = new Tensor[config.NumHiddenLayers];
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            _keys[l] = zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device);
            _values[l] = zeros([batch, config.NumKeyValueHeads, capacity, config.HeadDim], dtype, device);
        }
    }

    /// <summary>Number of slots.</summary>
    public int Capacity { get; }

    /// <summary>One past the highest slot written so far; attention reads slots [0, Length).</summary>
    public int Length { get; private set; }

    /// <summary>Number of layers.</summary>
    public int Layers => _keys.Length;

    /// <summary>Writes new keys/values ([B, kv_heads, T, d]) at <paramref name="slots"/> and returns views over slots [0, Length).</summary>
    public (Tensor Keys, Tensor Values) Update(int layer, Tensor slots, long maxSlot, Tensor k, Tensor v)
    {
        if (maxSlot >= Capacity) throw new InvalidOperationException($"KV cache slot {maxSlot} is beyond its capacity {Capacity}.");
        _keys[layer].index_copy_(2, slots, k);
        _values[layer].index_copy_(2, slots, v);
        return View(layer, (int)Math.Max(Length, maxSlot + 1));
    }

    /// <summary>Copies a contiguous run of keys/values ([B or 1, kv_heads, L, d]) into slots [start, start+L).</summary>
    public void Write(int layer, long start, Tensor k, Tensor v)
    {
        long len = k.shape[2];
        if (start < 0 || start + len > Capacity) throw new InvalidOperationException($"Slots [{start}, {start + len}) do not fit a KV cache of capacity {Capacity}.");
        using var kd = _keys[layer].narrow(2, start, len);
        using var vd = _values[layer].narrow(2, start, len);
        kd.copy_(k);
        vd.copy_(v);
    }

    /// <summary>Marks slots [0, length) as filled; call after the last layer of a forward step.</summary>
    public void Advance(int length) => Length = Math.Max(Length, length);

    /// <summary>Forgets everything written at slots at or after <paramref name="length"/> (their memory is reused).</summary>
    public void Truncate(int length) => Length = Math.Clamp(length, 0, Length);

    /// <summary>Views over slots [0, length) of a layer.</summary>
    public (Tensor Keys, Tensor Values) View(int layer, int length) =>
        (_keys[layer].narrow(2, 0, length), _values[layer].narrow(2, 0, length));

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
