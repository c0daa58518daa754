using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace KVLink.Core.Model;

/// <summary>
/// One vector width the decode kernel (<see cref="DecodeGemv"/>) runs at: <typeparamref name="TVec"/> holds
/// <see cref="Lanes"/> floats. The kernel's body is written once against these few operations, so AVX-512, AVX2+FMA and
/// ARM64 AdvSimd are served by the same loops; each width is a struct the JIT specialises the body for, and every member
/// inlines to one or two instructions. The operations are .NET's cross-platform ones; the widenings of a few bytes
/// name the x86 instruction where the cross-platform form would take two (a sign extension in two steps).
/// </summary>
internal unsafe interface IVectorWidth<TVec> where TVec : struct
{
    /// <summary>Floats per vector: the columns one step of the kernel covers.</summary>
    static abstract int Lanes { get; }

    /// <summary>All lanes zero.</summary>
    static abstract TVec Zero { get; }

    /// <summary><see cref="Lanes"/> floats from <paramref name="p"/>.</summary>
    static abstract TVec Load(float* p);

    /// <summary>a * b + c with one rounding (a real FMA instruction on every width the kernel is dispatched to).</summary>
    static abstract TVec MultiplyAdd(TVec a, TVec b, TVec c);

    /// <summary>The sum of the lanes.</summary>
    static abstract float Sum(TVec v);

    /// <summary><paramref name="x"/> in every lane.</summary>
    static abstract TVec Broadcast(float x);

    /// <summary>Writes the lanes to <paramref name="p"/>.</summary>
    static abstract void Store(TVec v, float* p);

    /// <summary><see cref="Lanes"/> bf16 values from <paramref name="p"/> as floats (bf16 is a float's upper half: a 16-bit shift).</summary>
    static abstract TVec Bf16(ushort* p);

    /// <summary><see cref="Lanes"/> int8 values from <paramref name="p"/> as floats.</summary>
    static abstract TVec Int8(sbyte* p);
}

/// <summary>16 floats: AVX-512F.</summary>
internal readonly unsafe struct Width512 : IVectorWidth<Vector512<float>>
{
    public static int Lanes => 16;
    public static Vector512<float> Zero => Vector512<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> v) => Vector512.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Bf16(ushort* p) => Vector512.ShiftLeft(Vector512.WidenLower(Vector256.Load<ushort>(p).ToVector512Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Int8(sbyte* p) => Avx512F.IsSupported
        ? Vector512.ConvertToSingle(Avx512F.ConvertToVector512Int32(Vector128.Load<sbyte>(p)))
        : Vector512.ConvertToSingle(Vector512.WidenLower(Vector512.WidenLower(Vector128.Load<sbyte>(p).ToVector256Unsafe().ToVector512Unsafe())));
}

/// <summary>8 floats: AVX2 with FMA.</summary>
internal readonly unsafe struct Width256 : IVectorWidth<Vector256<float>>
{
    public static int Lanes => 8;
    public static Vector256<float> Zero => Vector256<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> v) => Vector256.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Bf16(ushort* p) => Vector256.ShiftLeft(Vector256.WidenLower(Vector128.Load<ushort>(p).ToVector256Unsafe()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Int8(sbyte* p) => Avx2.IsSupported
        ? Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(p))
        : Vector256.ConvertToSingle(Vector256.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<long>(p)).AsSByte()).ToVector256Unsafe()));
}

/// <summary>4 floats: ARM64 AdvSimd, or x86 with FMA where wider vectors are not accelerated.</summary>
internal readonly unsafe struct Width128 : IVectorWidth<Vector128<float>>
{
    public static int Lanes => 4;
    public static Vector128<float> Zero => Vector128<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> MultiplyAdd(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector128<float> v) => Vector128.Sum(v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Broadcast(float x) => Vector128.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> v, float* p) => v.Store(p);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Bf16(ushort* p) => Vector128.ShiftLeft(Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<ulong>(p)).AsUInt16()), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Int8(sbyte* p) => Sse41.IsSupported
        ? Vector128.ConvertToSingle(Sse41.ConvertToVector128Int32(p))
        : Vector128.ConvertToSingle(Vector128.WidenLower(Vector128.WidenLower(Vector128.CreateScalarUnsafe(Unsafe.ReadUnaligned<int>(p)).AsSByte())));
}
