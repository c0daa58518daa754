namespace KVLink.Core.Caching;

/// <summary>How a serialized document cache stores its keys and values.</summary>
public enum KvCacheQuantization
{
    /// <summary>As computed (bf16, f16 or f32): bit-exact.</summary>
    None,
    /// <summary>
    /// Symmetric int8 with one fp32 scale per layer, head and channel (over all tokens). Keys are
    /// un-rotated to their pre-RoPE form before quantising and rotated back when read, so re-rotation to
    /// global positions stays exact after dequantisation. About half the bytes of bf16.
    /// </summary>
    Int8PerChannel,
    /// <summary>As <see cref="Int8PerChannel"/> with one scale per layer, head and token (over channels).</summary>
    Int8PerToken,
}
