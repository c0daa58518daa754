using static TorchSharp.torch;

namespace KVLink.Core.Model;

/// <summary>
/// Key and value buffers of finished sequences, kept for the next sequence of the same model. A fresh cache's memory
/// is faulted in page by page on first touch: for the 1B shape at 5k tokens that took 275 ms (bf16) to 560 ms
/// (float32) on the 2-core VMs we measure on, a quarter of a KVLink request's time to first token. A reused buffer has
/// its pages already, and clearing it runs at memory speed. Thread safe (one lock); buffers are never shared: a buffer
/// taken is out of the pool until returned.
/// </summary>
/// <remarks>
/// At most <see cref="MaxBuffers"/> buffer pairs and <see cref="MaxBytes"/> bytes are kept; beyond that the smallest
/// are freed. What the pool keeps is memory the process holds while idle: one or a few of the largest recent caches.
/// </remarks>
internal sealed class AttentionCachePool : IDisposable
{
    /// <summary>Buffer pairs kept at most.</summary>
    public const int MaxBuffers = 4;

    /// <summary>Bytes (keys and values together) kept at most.</summary>
    public const long MaxBytes = 2L << 30;

    private readonly Lock _gate = new();
    private readonly List<(Tensor Keys, Tensor Values, long Bytes)> _free = [];
    private long _bytes;
    private bool _disposed;

    /// <summary>Bytes held by buffers waiting in the pool.</summary>
    public long Bytes { get { lock (_gate) return _bytes; } }

    /// <summary>
    /// Takes the smallest kept pair whose shape is <paramref name="shape"/> ([layers, batch, kv_heads, capacity, d])
    /// with at least its capacity, in <paramref name="dtype"/> on <paramref name="device"/>; null when none fits.
    /// </summary>
    public (Tensor Keys, Tensor Values)? Take(long[] shape, ScalarType dtype, Device device)
    {
        lock (_gate)
        {
            int best = -1;
            for (int i = 0; i < _free.Count; i++)
            {
                var k = _free[i].Keys;
                if (k.dtype != dtype || k.device_type != device.type || k.device_index != device.index || !Fits(k.shape, shape)) continue;
                if (best < 0 || k.shape[3] < _free[best].Keys.shape[3]) best = i;
            }
            if (best < 0) return null;
            var taken = _free[best];
            _free.RemoveAt(best);
            _bytes -= taken.Bytes;
            return (taken.Keys, taken.Values);
        }
    }

    /// <summary>Keeps a pair for a later <see cref="Take"/>, freeing the smallest kept ones beyond the limits.</summary>
    public void Return(Tensor keys, Tensor values)
    {
        long bytes = 2 * keys.NumberOfElements * keys.ElementSize;
        lock (_gate)
        {
            if (!_disposed && bytes <= MaxBytes)
            {
                _free.Add((keys, values, bytes));
                _bytes += bytes;
                while (_free.Count > MaxBuffers || _bytes > MaxBytes)
                {
                    int smallest = 0;
                    for (int i = 1; i < _free.Count; i++) if (_free[i].Bytes < _free[smallest].Bytes) smallest = i;
                    Free(smallest);
                }
                return;
            }
        }
        keys.Dispose();
        values.Dispose();
    }

    /// <summary>Frees every kept buffer; later returns are freed at once.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            while (_free.Count > 0) Free(_free.Count - 1);
        }
    }

    private void Free(int i)
    {
        var (k, v, bytes) = _free[i];
        _free.RemoveAt(i);
        _bytes -= bytes;
        k.Dispose();
        v.Dispose();
    }

    private static bool Fits(long[] have, long[] want) =>
        have.Length == want.Length && have[0] == want[0] && have[1] == want[1] && have[2] == want[2] && have[3] >= want[3] && have[4] == want[4];
}
