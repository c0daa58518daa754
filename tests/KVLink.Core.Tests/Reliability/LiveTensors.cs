using TorchSharp;

namespace KVLink.Core.Tests.Reliability;

/// <summary>
/// Live TorchSharp tensors, for tests proving that a refusal created none. The process-wide count also falls when the
/// finalizer thread disposes tensors that earlier tests dropped, so the count is taken after finalizers have run, and a
/// refusal must leave it no higher (an equality check failed when a finalizer ran in between).
/// </summary>
internal static class LiveTensors
{
    public static long Quiesced()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return torch.Tensor.TotalCount;
    }

    public static void AssertNoneCreatedSince(long before)
    {
        long now = torch.Tensor.TotalCount;
        Assert.True(now <= before, $"{now - before} tensors were created (live count {before} -> {now})");
    }
}
