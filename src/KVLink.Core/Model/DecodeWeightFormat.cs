using System.Runtime.CompilerServices;

namespace KVLink.Core.Model;

/// <summary>How a weight row is stored for <see cref="DecodeGemv"/>: widened to float in registers, one vector at a time.</summary>
internal unsafe interface IWeightFormat
{
    /// <summary>Bytes per weight.</summary>
    static abstract int Size { get; }

    /// <summary>Columns [i, i + lanes) of the row at <paramref name="row"/>, as floats.</summary>
    static abstract TVec Widen<TWidth, TVec>(byte* row, int i) where TWidth : IVectorWidth<TVec> where TVec : struct;

    /// <summary>Column <paramref name="i"/> of the row at <paramref name="row"/> (the scalar tails).</summary>
    static abstract float At(byte* row, int i);
}

/// <summary>int8 weights, one scale per output row.</summary>
internal readonly unsafe struct Int8Format : IWeightFormat
{
    public static int Size => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Widen<TWidth, TVec>(byte* row, int i) where TWidth : IVectorWidth<TVec> where TVec : struct => TWidth.Int8((sbyte*)row + i);

    public static float At(byte* row, int i) => ((sbyte*)row)[i];
}

/// <summary>bf16 weights (the upper half of a float: widening is a 16-bit shift), read in place from the model's tensor.</summary>
internal readonly unsafe struct Bf16Format : IWeightFormat
{
    public static int Size => 2;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Widen<TWidth, TVec>(byte* row, int i) where TWidth : IVectorWidth<TVec> where TVec : struct => TWidth.Bf16((ushort*)row + i);

    public static float At(byte* row, int i) => BitConverter.Int32BitsToSingle(((ushort*)row)[i] << 16);
}
