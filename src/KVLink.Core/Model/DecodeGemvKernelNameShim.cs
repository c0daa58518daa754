using System.Runtime.Intrinsics;

namespace KVLink.Core.Model;

// TEMPORARY (branch wt-dtype): stands in for DecodeGemv.KernelName, which the decode-kernel rewrite adds. At merge,
// delete this file and replace the one use, DecodeKernelInfo.Name in Engine/ComputeDTypeChoice.cs, with DecodeGemv.KernelName.
internal static class DecodeKernelInfo
{
    internal static string Name => Vector512.IsHardwareAccelerated ? "Vector512 (AVX-512F)"
        : Vector256.IsHardwareAccelerated ? "Vector256 (AVX2+FMA)" : "scalar";
}
